"""`dataclass`, as the standard library's, without compiling five methods per class at import.

Python 3.11's `dataclasses.dataclass` writes the source of `__init__`, `__repr__`, `__eq__`,
`__hash__` and a frozen class's `__setattr__` and `__delattr__` (and four ordering methods) and
compiles each with its own `exec`: about 0.55 ms per frozen class on the 2-core bench machine,
two thirds of it in `exec`. A `zoostore sync` defines 40 classes before it reads a file, a
publish 31: 22-38 ms of every command's start on one core (docs/design-decisions.md, "Records").

This decorator lets `dataclasses` do everything but write methods (fields, defaults, slots,
`__match_args__`, `__dataclass_fields__`, so `dataclasses.fields`, `replace` and `asdict` work
as before), compiles `__init__` alone (in the class's module, so its type hints resolve), and
gives the class `__repr__`, `__eq__`, `__hash__`, the frozen `__setattr__`/`__delattr__` and
the ordering methods as closures over its field names: no compiling, and the same behaviour
(tests/test_records.py holds it against the standard decorator class shape by class shape).
It takes the options zoostore uses (`frozen`, `slots`, `order`) and refuses what it does not
implement (`InitVar` and `kw_only` fields, a dataclass base class): those need the standard one.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
import reprlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast, dataclass_transform, overload

T = TypeVar("T", bound=type)


class _Factory:
    """The default of an init argument whose field has a default_factory."""

    def __repr__(self) -> str:
        return "<factory>"   # as dataclasses shows it in signatures


_HAS_FACTORY = _Factory()
_ORDER = (("__lt__", operator.lt), ("__le__", operator.le), ("__gt__", operator.gt), ("__ge__", operator.ge))


@overload
def dataclass(cls: T, /) -> T: ...
@overload
def dataclass(*, frozen: bool = False, slots: bool = False, order: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def dataclass(cls: T | None = None, /, *, frozen: bool = False, slots: bool = False,
              order: bool = False) -> T | Callable[[T], T]:
    """`dataclasses.dataclass(cls, frozen=..., slots=..., order=...)` with eq and repr, made
    without compiling more than `__init__` (see the module docstring)."""
    def wrap(cls: T) -> T:
        return _process(cls, frozen=frozen, slots=slots, order=order)
    return wrap if cls is None else wrap(cls)


def _process(cls: T, *, frozen: bool, slots: bool, order: bool) -> T:
    own = dict(cls.__dict__)   # before dataclasses (and slots) rebuild it: what the body defined
    if any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:]):
        # dataclasses checks frozen against a dataclass base's, and this one tells it frozen=False
        raise TypeError(f"{cls.__qualname__}: a dataclass base needs dataclasses.dataclass")
    if frozen and ("__setattr__" in own or "__delattr__" in own):
        raise TypeError(f"Cannot overwrite attribute __setattr__ or __delattr__ in class {cls.__name__}")
    out = cast(T, dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=slots))
    params = cast(Any, out).__dataclass_params__   # what dataclasses.dataclass would have recorded:
    params.init = params.repr = params.eq = True   # a dataclass subclassing this one checks frozen
    params.order, params.frozen = order, frozen
    fields = dataclasses.fields(out)
    names = tuple(f.name for f in fields)
    refused = [name for name, spec in cast(Any, out).__dataclass_fields__.items()
               if "InitVar" in str(spec.type) or (name in names and spec.kw_only is True)]
    if refused:   # (an InitVar's type is a string under `from __future__ import annotations`)
        raise TypeError(f"{cls.__qualname__}: InitVar and kw_only fields ({', '.join(refused)}) need "
                        f"dataclasses.dataclass")
    key = _key(tuple(f.name for f in fields if f.compare))
    methods: dict[str, Any] = {
        "__init__": _init(out, fields, frozen=frozen, slots=slots),
        "__repr__": _repr(out, tuple(f.name for f in fields if f.repr)),
        "__eq__": _eq(key),
    }
    for name, op in _ORDER if order else ():
        if name in own:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}. Consider using "
                            f"functools.total_ordering")
        methods[name] = _compare(out, name, op, key)
    if frozen:
        methods["__setattr__"], methods["__delattr__"] = _frozen(out, names)
        if slots:
            methods["__getstate__"], methods["__setstate__"] = _slot_state(names)
    for name, method in methods.items():
        if name not in own:
            setattr(out, name, method)
    if not (own.get("__hash__") is not None or ("__hash__" in own and "__eq__" not in own)):
        # No __hash__ of its own: dataclasses' rule for eq=True is that a frozen class hashes its
        # compared fields (a field's hash=None follows compare) and any other is unhashable.
        hashed = _key(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
        setattr(out, "__hash__", _hash(out, hashed) if frozen else None)
    if not own.get("__doc__"):   # dataclasses wrote it from the signature before __init__ existed
        out.__doc__ = cls.__name__ + str(inspect.signature(out)).replace(" -> None", "")
    return out


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...], *, frozen: bool, slots: bool) -> Callable[..., None]:
    """`__init__` as dataclasses writes it (3.11 `_init_fn`, without InitVar and kw_only): made
    by a function compiled in the class's module, so that its globals are the module's (type
    hints resolve there) and the helpers are its closure."""
    helpers: dict[str, Any] = {"__object_setattr": object.__setattr__, "__has_factory": _HAS_FACTORY}
    self_name = "__dataclass_self__" if any(f.name == "self" for f in fields) else "self"
    params, body = [self_name], []
    seen_default = False
    for f in fields:
        dflt = f"__dflt_{f.name}"
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if f.default_factory is not dataclasses.MISSING:
            helpers[dflt] = f.default_factory
            value = f"{dflt}() if {f.name} is __has_factory else {f.name}" if f.init else f"{dflt}()"
        elif f.init:
            value = f.name
            if f.default is not dataclasses.MISSING:
                helpers[dflt] = f.default
        elif slots and f.default is not dataclasses.MISSING:
            value, helpers[dflt] = dflt, f.default
        else:
            continue   # an init=False field with a class default, or none: not set here
        if f.init:
            if seen_default and not has_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            seen_default = seen_default or has_default
            params.append(f"{f.name}={'__has_factory' if f.default_factory is not dataclasses.MISSING else dflt}"
                          if has_default else f.name)
        body.append(f"__object_setattr({self_name}, {f.name!r}, {value})" if frozen else
                    f"{self_name}.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append(f"{self_name}.__post_init__()")
    src = (f"def __make_init__({', '.join(helpers)}):\n"
           f"    def __init__({', '.join(params)}):\n" + "".join(f"        {line}\n" for line in body or ["pass"])
           + "    return __init__\n")
    made: dict[str, Any] = {}
    module = sys.modules.get(cls.__module__)
    exec(src, module.__dict__ if module is not None else {}, made)   # noqa: S102 - our own source, as dataclasses does
    init: Callable[..., None] = made["__make_init__"](**helpers)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields if f.init}, "return": None}
    return init


def _key(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of an instance's values of `names`, which eq, order and hash compare."""
    if not names:
        return lambda self: ()
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda self: (one(self),)
    return operator.attrgetter(*names)


def _repr(cls: type, names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({inner})"
    __repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
    return __repr__


def _eq(key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented
    return __eq__


def _compare(cls: type, name: str, op: Callable[[Any, Any], Any],
             key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def compare(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return op(key(self), key(other))
        return NotImplemented
    compare.__name__, compare.__qualname__ = name, f"{cls.__qualname__}.{name}"
    return compare


def _hash(cls: type, key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(key(self))
    __hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
    return __hash__


def _frozen(cls: type[Any], names: tuple[str, ...]) -> tuple[Callable[[Any, str, Any], None], Callable[[Any, str], None]]:
    """A frozen class's `__setattr__` and `__delattr__`: fields cannot change; a subclass's own
    attributes can, as with dataclasses."""
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__


def _slot_state(names: tuple[str, ...]) -> tuple[Callable[[Any], list[Any]], Callable[[Any, list[Any]], None]]:
    """Pickling and copying a frozen slotted instance (dataclasses adds the same pair)."""
    def __getstate__(self: Any) -> list[Any]:
        return [getattr(self, name) for name in names]

    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state):
            object.__setattr__(self, name, value)

    return __getstate__, __setstate__


__all__ = ["dataclass"]
