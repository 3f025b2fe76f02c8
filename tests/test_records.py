"""zoostore.core.records.dataclass behaves as dataclasses.dataclass, class shape by class shape.

Each shape is defined twice, once with each decorator (module level, so that pickle finds
them), and every test runs the same steps on both and compares what they give.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import threading
import typing
from typing import Any

import pytest

from zoostore.core import records


class Marker:
    """A type named in annotations: hints must resolve in this module."""


def _shapes(dc: Any) -> dict[str, type]:
    @dc(frozen=True, slots=True)
    class Ref:
        """A frozen slotted value with defaults, a factory, a field out of eq and one out of repr."""

        chunk: str
        size: int
        pack: str = "p"
        tags: list[str] = dataclasses.field(default_factory=list, compare=False)
        secret: int = dataclasses.field(default=7, repr=False)

    @dc(frozen=True, slots=True, order=True)
    class Key:
        hex: str

    @dc(frozen=True, slots=True, order=True)
    class Pair:
        major: int
        minor: int

    @dc(slots=True)
    class Counter:
        """Mutable, slotted: unhashable, assignable; a field outside __init__."""

        n: int = 0
        seen: dict[str, int] = dataclasses.field(default_factory=dict)
        lock: Any = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)
        total: int = dataclasses.field(default=5, init=False)

    @dc(frozen=True)
    class Checked:
        """Frozen without slots, with a __post_init__ that derives a field."""

        value: int
        double: int = dataclasses.field(default=0, init=False)

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")
            object.__setattr__(self, "double", 2 * self.value)

    @dc
    class Bare:
        q: int = 1
        r: list[int] = dataclasses.field(default_factory=list)
        m: Marker | None = None

    @dc(frozen=True, slots=True)
    class Empty:
        pass

    @dc(frozen=True, slots=True)
    class Hashed:
        """A field left out of the hash only (hash=False), and an own __repr__."""

        a: int
        b: int = dataclasses.field(default=0, hash=False)

        def __repr__(self) -> str:
            return f"<{self.a}>"

    @dc(frozen=True)
    class OwnEq:
        """Its own __eq__ (which sets __hash__ to None in the body): dataclasses still adds a hash."""

        a: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, OwnEq) and abs(self.a - other.a) <= 1

    return {cls.__name__: cls for cls in (Ref, Key, Pair, Counter, Checked, Bare, Empty, Hashed, OwnEq)}


STD = _shapes(dataclasses.dataclass)
OURS = _shapes(records.dataclass)
for _name, _cls in STD.items():   # picklable at module level, under distinct names
    _cls.__qualname__ = f"Std{_name}"
    globals()[f"Std{_name}"] = _cls
for _name, _cls in OURS.items():
    _cls.__qualname__ = f"Ours{_name}"
    globals()[f"Ours{_name}"] = _cls


def _outcome(step: Any) -> tuple[str, Any]:
    """What a step gives, or the type and message of what it raises (names made neutral)."""
    try:
        result = step()
    except Exception as exc:   # noqa: BLE001 - the outcome is compared, whatever it is
        return "raised", (type(exc).__name__, str(exc).replace("Std", "").replace("Ours", ""))
    if isinstance(result, str):
        result = result.replace("Std", "").replace("Ours", "")
    return "gave", result


def _both(steps: Any) -> None:
    for name in STD:
        ours = [_outcome(lambda s=s: s(OURS[name])) for s in steps]
        std = [_outcome(lambda s=s: s(STD[name])) for s in steps]
        assert ours == std, name


def test_construction_repr_and_signature_match() -> None:
    def build(cls: type) -> list[Any]:
        out = []
        for args in ((), ("c",), ("c", 1), ("c", 1, "q", ["t"], 3), (1,), (1, 2), (-1,)):
            out.append(_outcome(lambda: repr(cls(*args))))
        out.append(str(inspect.signature(cls)))
        out.append(_outcome(lambda: typing.get_type_hints(cls.__init__)))
        out.append((cls.__init__.__module__, cls.__doc__))
        params = cls.__dataclass_params__   # type: ignore[attr-defined]
        out.append((params.init, params.repr, params.eq, params.order, params.frozen))
        out.append(getattr(cls, "__match_args__", None))
        out.append([f.name for f in dataclasses.fields(cls)])
        return out
    _both([build])


def test_equality_hash_and_order_match() -> None:
    def compare(cls: type) -> list[Any]:
        fields = [f for f in dataclasses.fields(cls) if f.init]
        needed = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        values = {"chunk": ["a", "b"], "size": [1, 2], "hex": ["a", "b"], "major": [1, 2], "minor": [1, 2],
                  "value": [1, 2], "a": [1, 3]}
        a = cls(*[values[f.name][0] for f in needed])
        b = cls(*[values[f.name][0] for f in needed])
        c = cls(*[values[f.name][-1] for f in needed])
        return [a == b, a != b, a == c, a == object(), _outcome(lambda: hash(a) == hash(b)),
                _outcome(lambda: a < c), _outcome(lambda: sorted([c, a]) == [a, c]),
                _outcome(lambda: a >= b), type(cls.__dict__.get("__hash__")).__name__]
    _both([compare])


def test_fields_outside_compare_and_hash_are_ignored_as_dataclasses_does() -> None:
    for family in (STD, OURS):
        ref = family["Ref"]
        assert ref("c", 1, tags=["x"]) == ref("c", 1, tags=["y"])
        assert hash(ref("c", 1, tags=["x"])) == hash(ref("c", 1, tags=["y"]))
        assert ref("c", 1, secret=1) != ref("c", 1, secret=2)
        hashed = family["Hashed"]
        assert hash(hashed(1, 2)) == hash(hashed(1, 3)) and hashed(1, 2) != hashed(1, 3)
        assert repr(hashed(1)) == "<1>"
        own = family["OwnEq"]
        assert own(1) == own(2) and hash(own(1)) != hash(own(2))


def test_frozen_and_mutable_assignment_match() -> None:
    def assign(cls: type) -> list[Any]:
        fields = [f for f in dataclasses.fields(cls) if f.init]
        needed = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        obj = cls(*[1 for _ in needed])
        name = dataclasses.fields(cls)[0].name if dataclasses.fields(cls) else None

        def new_attr() -> Any:
            obj.other = 1
            return obj.other

        if name is None:   # no field: what 3.11 gets wrong below, for every name
            return [_outcome(new_attr)[0]]

        def set_it() -> Any:
            setattr(obj, name, 5)
            return getattr(obj, name)

        def del_it() -> Any:
            delattr(obj, name)
            return hasattr(obj, name)

        # A frozen slotted class refuses a new attribute either way; 3.11's dataclasses says so
        # with a TypeError from its own super() call (its closure holds the class from before
        # slots), ours with FrozenInstanceError, as for a field: only that it refuses is compared.
        return [_outcome(set_it), _outcome(new_attr)[0], _outcome(del_it)]
    _both([assign])


def test_defaults_factories_and_post_init_match() -> None:
    for family in (STD, OURS):
        counter = family["Counter"]
        a, b = counter(), counter()
        a.seen["x"] = 1
        assert b.seen == {} and a.total == 5 and a.lock is not b.lock
        assert family["Checked"](3).double == 6
        with pytest.raises(ValueError, match="negative"):
            family["Checked"](-1)
        assert family["Bare"]().r is not family["Bare"]().r


def test_replace_asdict_pickle_and_copy_match() -> None:
    def roundtrips(cls: type) -> list[Any]:
        fields = [f for f in dataclasses.fields(cls) if f.init]
        needed = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        obj = cls(*[2 for _ in needed])
        first = fields[0].name if fields else None
        out = [_outcome(lambda: repr(dataclasses.replace(obj, **({first: 4} if first else {})))),
               _outcome(lambda: dataclasses.asdict(obj) if cls.__name__.endswith("Counter") is False else None),
               dataclasses.is_dataclass(obj)]
        if "Counter" not in cls.__qualname__:   # a threading.Lock pickles in neither
            out.append(_outcome(lambda: pickle.loads(pickle.dumps(obj)) == obj))
            out.append(_outcome(lambda: copy.deepcopy(obj) == obj))
        out.append(_outcome(lambda: copy.copy(obj) == obj))
        return out
    _both([roundtrips])


def test_unsupported_options_are_refused() -> None:
    with pytest.raises(TypeError, match="InitVar"):
        @records.dataclass
        class WithInitVar:
            a: dataclasses.InitVar[int]
    with pytest.raises(TypeError, match="__lt__"):
        @records.dataclass(order=True)
        class OwnOrder:
            a: int

            def __lt__(self, other: object) -> bool:
                return False


def test_zoostore_defines_its_classes_with_records() -> None:
    """A module that took `dataclass` from the standard library again would bring back the
    compile cost at every command's start (records' docstring): none does."""
    import re
    from pathlib import Path

    root = Path(records.__file__).parents[1]
    stdlib_use = re.compile(r"^from dataclasses import [^\n]*\bdataclass\b|@dataclasses\.dataclass\b", re.M)
    offenders = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
                 if p.name != "records.py" and stdlib_use.search(p.read_text())]
    assert not offenders, f"use zoostore.core.records.dataclass in: {offenders}"


def test_subclasses_and_class_bodies_are_treated_as_dataclasses_does() -> None:
    ours, std = OURS["Checked"], STD["Checked"]
    for base in (ours, std):
        @dataclasses.dataclass(frozen=True)
        class Frozen(base):   # type: ignore[valid-type, misc]
            extra: int = 0
        assert Frozen(2, extra=1).double == 4
        with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):
            @dataclasses.dataclass
            class Thawed(base):   # type: ignore[valid-type, misc]
                extra: int = 0
    with pytest.raises(TypeError, match="dataclass base"):
        @records.dataclass(frozen=True)
        class OnTop(std):   # type: ignore[valid-type, misc]
            extra: int = 0

    with pytest.raises(TypeError, match="__setattr__"):
        @records.dataclass(frozen=True)
        class OwnSetattr:
            a: int

            def __setattr__(self, name: str, value: object) -> None:
                pass

    @records.dataclass(frozen=True, slots=True)
    class OwnState:
        a: int

        def __getstate__(self) -> str:
            return "mine"
    assert OwnState(1).__getstate__() == "mine"

    for dc in (records.dataclass, dataclasses.dataclass):
        with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
            @dc
            class Order:
                a: int = 0
                b: int

        @dc(frozen=True)
        class Selfish:
            self: int
            other: int = 2
        assert Selfish(1).self == 1 and repr(Selfish(self=3)).endswith("Selfish(self=3, other=2)")


def test_kw_only_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="kw_only"):
        @records.dataclass
        class KwOnly:
            a: int = dataclasses.field(default=0, kw_only=True)
