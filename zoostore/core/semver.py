"""Semantic versions (semver 2.0.0) and version ranges with npm node-semver's matching rules.

A version is ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``. Precedence follows semver.org §11:
numbers compare numerically, a prerelease sorts before its release, prerelease identifiers compare
left to right (numeric ones numerically and below alphanumeric ones, which compare in ASCII order),
and build metadata is ignored.

One job, longer than 500 lines: the grammar, the desugaring of every range form and the
matching rules belong together and mirror node-semver's own layout.

A range is what ``package.json`` accepts, interpreted exactly as node-semver 7 does with default
options (``loose: false``, ``includePrerelease: false``)::

    range     := set ( "||" set )*                    OR
    set       := hyphen | simple ( (" " | ",") simple )*  AND; the comma is a zoostore addition
    hyphen    := partial " - " partial                1.2 - 1.4   ==  >=1.2.0 <1.5.0-0
    simple    := op? " "? partial | "~" ">"? " "? partial | "^" " "? partial
    op        := "<" | "<=" | ">" | ">=" | "="
    partial   := [v=]* xr ( "." xr ( "." xr ( "-" prerelease )? )? )?    xr := number | x | X | *

Every simple is desugared into plain comparators (``^0.2.3`` is ``>=0.2.3 <0.3.0-0``,
``~1.2`` is ``>=1.2.0 <1.3.0-0``, ``1.x`` is ``>=1.0.0 <2.0.0-0``, ``*`` and the empty range
match any release); `Range.desugared` shows the result in node-semver's own notation. A version
is in a range when it passes every comparator of some set, and, if it is a prerelease, when that
same set also names a prerelease of the same ``MAJOR.MINOR.PATCH``: ``^1.2.3-beta.1`` admits
``1.2.3-beta.2`` but not ``1.2.4-beta``, and ``*`` admits no prerelease at all. Like node-semver,
a set that matches every release absorbs the other sets, so ``* || 1.2.3-beta`` does not contain
``1.2.3-beta``.

Build metadata (``+...``) is removed from range text before parsing, as node-semver does.

Where node-semver accepts text only by accident of its regex pipeline we reject it (the range is
invalid here, valid there); everything else agrees. `tests/data/semver_vectors.json` holds
node-semver's answers for thousands of cases and the test suite checks each one. Deviations:

- ``Version.parse`` also accepts a leading ``=`` (``=1.2.3``); node-semver's strict parser accepts
  only ``v``. So ``satisfies("=1.2.3", "1.2.3")`` is True here and false in node.
- ``,`` is AND (``>=1.2, <2``); node-semver rejects commas.
- ``max_satisfying`` raises `InvalidVersionError` for an invalid range; node returns null.
- Rejected here, accepted by node-semver: a stray ``*`` glued to a comparator (``1.2.3*``,
  ``>=*1.2.3``, ``>*1.2.3``, which node reads as ``1.2.3``: its star-stripping step deletes the
  first ``*`` of any token it could not otherwise read).
- Numeric prerelease identifiers above 2**53 - 1 compare exactly here; node compares them as
  floating-point numbers.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Set
from typing import Literal

from zoostore.core.errors import InvalidVersionError
from zoostore.core.records import dataclass

__all__ = [
    "Comparator",
    "Range",
    "Version",
    "date_prerelease_hint",
    "is_range",
    "max_satisfying",
    "parse_range",
    "parse_version",
    "satisfies",
]

# node-semver's limits (internal/constants.js): longer version text and larger numbers are
# refused, which keeps versions exchangeable with JavaScript tooling.
MAX_VERSION_LENGTH = 256
#: Ranges longer than this are refused before parsing (bounded time on hostile input).
MAX_RANGE_LENGTH = 1024
MAX_SAFE_INTEGER = 2**53 - 1

_NUMBER = r"0|[1-9][0-9]*"
_ALNUM_ID = r"[0-9]*[A-Za-z-][0-9A-Za-z-]*"
_PRE_ID = rf"(?:{_ALNUM_ID}|{_NUMBER})"
_PRERELEASE = rf"{_PRE_ID}(?:\.{_PRE_ID})*"
_BUILD = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION_RE = re.compile(
    rf"=?v?({_NUMBER})\.({_NUMBER})\.({_NUMBER})(?:-({_PRERELEASE}))?(?:\+({_BUILD}))?", re.ASCII
)
_ALNUM_ID_RE = re.compile(_ALNUM_ID, re.ASCII)
_BUILD_ID_RE = re.compile(r"[0-9A-Za-z-]+", re.ASCII)

_XR = rf"{_NUMBER}|[xX*]"
# The prefix may hold whitespace only in hyphen ranges, which are matched on the set's text.
_PARTIAL_RE = re.compile(
    rf"([v=\s]*)({_XR})(?:\.({_XR})(?:\.({_XR})(?:-({_PRERELEASE}))?)?)?", re.ASCII
)
# Alternation order matters: "^" and "~" first, then a greedy "<=", ">=", "<", ">", "=" or "".
_TOKEN_RE = re.compile(r"(\^|~>?|[<>]?=?)(.*)", re.DOTALL)
# node-semver strips build metadata anywhere in a comparator set (classes/range.js, BUILDSTRIPRE).
_RANGE_BUILD_RE = re.compile(rf"\+{_BUILD}", re.ASCII)
# node-semver's comparator trim removes the space after <, <=, >, >= or =, even when a ~ or ^
# comes first (so "~= 12" is "~=12", a tilde range), if a v/= run and a version follow.
_GLUE_OPERATORS = frozenset(f"{lead}{op}" for lead in ("", "~", "^") for op in ("<", "<=", ">", ">=", "="))
_VERSION_START_RE = re.compile(r"[v=]*(?:[0-9xX*]|$)")

_VERSION_EXPECTED = (
    "expected MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD (semver 2.0.0), "
    "for example 1.2.3, 1.2.3-rc.1 or 1.2.3+20220504"
)
_RANGE_EXPECTED = (
    "expected comparators such as 1.2.3, ^1.2, ~1.2.3, 1.x, *, >=1.2 <2 or >=1.2, <2 (AND), "
    "1.2 - 1.4, joined by || (OR)"
)

Identifier = int | str
Operator = Literal["<", "<=", ">", ">=", "="]


def _component(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidVersionError(
            f"invalid version: {name} must be a non-negative int, got {value!r}; {_VERSION_EXPECTED}"
        )
    if value > MAX_SAFE_INTEGER:
        raise InvalidVersionError(f"invalid version: {name} {_too_large(value)}; {_VERSION_EXPECTED}")
    return value


def _too_large(number: int | str) -> str:
    return f"{number} is larger than {MAX_SAFE_INTEGER} (2**53 - 1, the largest number node-semver accepts)"


def _digits(text: str, expected: str) -> int:
    """A number already matched by `_NUMBER`; refuses values past MAX_SAFE_INTEGER with a message
    that ends in expected."""
    # The length test comes first so that int() never sees a huge digit string.
    if len(text) > len(str(MAX_SAFE_INTEGER)) or int(text) > MAX_SAFE_INTEGER:
        raise InvalidVersionError(f"{_too_large(text)}; {expected}")
    return int(text)


def _identifiers(text: str | None) -> tuple[Identifier, ...]:
    """Dot-separated prerelease identifiers; numeric ones become ints."""
    if not text:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


@dataclass(frozen=True, slots=True)
class Version:
    """A semver 2.0.0 version.

    Ordering (``<``, ``<=``, ``>``, ``>=``, ``sorted``) is semver precedence, which ignores build
    metadata; ``==`` and ``hash`` compare every field, build included, so ``1.2.3+a`` and
    ``1.2.3+b`` are different values of equal precedence (``a.key == b.key``, neither ``a < b``
    nor ``b < a``). Numeric prerelease identifiers are ints, alphanumeric ones strs.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[Identifier, ...] = ()
    build: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _component("major", self.major)
        _component("minor", self.minor)
        _component("patch", self.patch)
        if not isinstance(self.prerelease, tuple) or not isinstance(self.build, tuple):
            raise InvalidVersionError(
                f"invalid version: prerelease and build must be tuples, got {self.prerelease!r} "
                f"and {self.build!r}; {_VERSION_EXPECTED}"
            )
        for ident in self.prerelease:
            numeric = isinstance(ident, int) and not isinstance(ident, bool) and ident >= 0
            alnum = isinstance(ident, str) and _ALNUM_ID_RE.fullmatch(ident) is not None
            if not (numeric or alnum):
                raise InvalidVersionError(
                    f"invalid version: prerelease identifier {ident!r} must be a non-negative int "
                    f"or a str of [0-9A-Za-z-] with at least one non-digit; {_VERSION_EXPECTED}"
                )
        for ident in self.build:
            if not isinstance(ident, str) or _BUILD_ID_RE.fullmatch(ident) is None:
                raise InvalidVersionError(
                    f"invalid version: build identifier {ident!r} must be a non-empty str of "
                    f"[0-9A-Za-z-]; {_VERSION_EXPECTED}"
                )

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse strict semver 2.0.0 text; surrounding whitespace and a leading ``v``, ``=`` or
        ``=v`` are allowed (``v1.2.3``). Raises `InvalidVersionError` naming the text, the
        likely problem and the expected form."""
        if not isinstance(text, str):
            raise InvalidVersionError(
                f"invalid version {text!r}: expected a str, got {type(text).__name__}; "
                f"{_VERSION_EXPECTED}"
            )
        if len(text) > MAX_VERSION_LENGTH:
            raise InvalidVersionError(
                f"invalid version {text[:40]!r}...: it is {len(text)} characters long, the limit "
                f"is {MAX_VERSION_LENGTH}; {_VERSION_EXPECTED}"
            )
        match = _VERSION_RE.fullmatch(text.strip())
        if match is None:
            raise InvalidVersionError(f"invalid version {text!r}: {_why_not_version(text)}")
        major, minor, patch, pre, build = match.groups()
        try:
            numbers = tuple(_digits(n, _VERSION_EXPECTED) for n in (major, minor, patch))
        except InvalidVersionError as exc:
            raise InvalidVersionError(f"invalid version {text!r}: {exc}") from None
        return cls(
            numbers[0], numbers[1], numbers[2], _identifiers(pre), tuple(build.split(".")) if build else ()
        )

    @property
    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, Identifier], ...]]:
        """Sort key for semver precedence: equal keys mean equal precedence (build ignored).

        A release gets 1 in the fourth place so that it sorts after all its prereleases; each
        prerelease identifier becomes (0, int) or (1, str), so numbers sort below words and a
        longer identifier list sorts after its prefix.
        """
        if not self.prerelease:
            return (self.major, self.minor, self.patch, 1, ())
        ids = tuple((0, i) if isinstance(i, int) else (1, i) for i in self.prerelease)
        return (self.major, self.minor, self.patch, 0, ids)

    @property
    def is_prerelease(self) -> bool:
        """True for ``1.2.3-rc.1``; False for ``1.2.3`` and ``1.2.3+build``."""
        return bool(self.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(i) for i in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key < other.key

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key <= other.key

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key > other.key

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key >= other.key


def _why_not_version(text: str) -> str:
    """The likely problem with text that is not a version, followed by what is expected."""
    core = text.strip().lstrip("=v").split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if all(p.isdigit() for p in parts) and 0 < len(parts) < 3:
        reason = f"it has {len(parts)} of the 3 numbers (a partial like {core} is a range)"
    elif all(p.isdigit() for p in parts) and len(parts) > 3:
        reason = f"it has {len(parts)} numbers instead of 3"
    elif any(len(p) > 1 and p.startswith("0") and p.isdigit() for p in parts):
        reason = "a number has a leading zero"
    else:
        reason = "it is not semver"
    return f"{reason}; {_VERSION_EXPECTED}"


_ZERO = Version(0, 0, 0)
# node-semver's "null set" comparator: nothing is below 0.0.0-0.
_NOTHING = "<0.0.0-0"


@dataclass(frozen=True, slots=True)
class Comparator:
    """One primitive comparison such as ``>=1.2.0`` or ``<2.0.0-0``."""

    op: Operator
    version: Version

    def test(self, version: Version) -> bool:
        """Whether version compares to this comparator's version as the operator says."""
        a, b = version.key, self.version.key
        if self.op == "<":
            return a < b
        if self.op == "<=":
            return a <= b
        if self.op == ">":
            return a > b
        if self.op == ">=":
            return a >= b
        return a == b

    def __str__(self) -> str:
        """node-semver's notation: equality has no operator (``1.2.3``)."""
        return ("" if self.op == "=" else self.op) + str(self.version)


# One AND-ed set of comparators; the empty tuple matches every release.
ComparatorSet = tuple[Comparator, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """A version range: `sets` are OR-ed, the comparators inside a set AND-ed.

    `text` is the range as written, with whitespace normalised, commas and operator spacing
    folded and build metadata removed; ``str(range)`` returns it and it parses back to the same
    sets. `desugared` is node-semver's spelling of the comparators.
    """

    text: str
    sets: tuple[ComparatorSet, ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse range text (see the module docstring); raises `InvalidVersionError`."""
        if not isinstance(text, str):
            raise InvalidVersionError(
                f"invalid version range {text!r}: expected a str, got {type(text).__name__}; "
                f"{_RANGE_EXPECTED}"
            )
        if len(text) > MAX_RANGE_LENGTH:
            raise InvalidVersionError(
                f"invalid version range {text[:40]!r}... ({len(text)} characters): the longest range "
                f"zoostore reads is {MAX_RANGE_LENGTH} characters; {_RANGE_EXPECTED}"
            )
        shown: list[str] = []
        sets: list[ComparatorSet] = []
        for source in text.replace(",", " ").split("||"):
            source = " ".join(_RANGE_BUILD_RE.sub("", source).split())
            hyphen = _split_hyphen(source)
            try:
                if hyphen:
                    sets.append(_simplify_set(_hyphen(*hyphen)))
                    shown.append(source)
                    continue
                tokens = _glue_operators(source.split())
                sets.append(_simplify_set([i for token in tokens for i in _parse_token(token)]))
            except InvalidVersionError as exc:
                raise InvalidVersionError(f"invalid version range {text!r}: {exc}") from None
            shown.append(" ".join(tokens) or "*")
        return cls(" || ".join(shown), _simplify(sets))

    def contains(self, version: Version | str) -> bool:
        """Whether version is in the range; text that is not a version is not in any range."""
        if isinstance(version, str):
            try:
                version = Version.parse(version)
            except InvalidVersionError:
                return False
        return any(_set_contains(s, version) for s in self.sets)

    @property
    def desugared(self) -> str:
        """The comparators in node-semver's notation, as ``new Range(text).range`` prints them:
        ``^1.2`` gives ``>=1.2.0 <2.0.0-0``; a range that matches every release gives ``""``."""
        return "||".join(" ".join(str(c) for c in s) for s in self.sets)

    def __str__(self) -> str:
        return self.text


def _split_hyphen(source: str) -> tuple[str, str] | None:
    """The two ends of a hyphen range ``1.2 - 1.4`` in whitespace-normalised text, else None.

    node-semver's HYPHENRANGE is ``^\\s*([v=\\s]*\\S+)\\s+-\\s+([v=\\s]*\\S+)\\s*$``; as a Python
    regular expression it backtracks quadratically on long input (64 KB took 20 s), so this
    splits instead: each end is a run of ``v``, ``=`` and spaces followed by one word.
    """
    parts = source.split(" - ")
    if len(parts) != 2:
        return None
    for part in parts:
        if not part or " " in part.lstrip("v= "):
            return None
    return parts[0], parts[1]


def _glue_operators(tokens: list[str]) -> list[str]:
    """Glue an operator written apart from its version to it: ``>= 1.2`` is ``>=1.2``.

    Three passes in node-semver's order (comparator, tilde, caret trims), so that ``~ > 1.2``
    reads as ``~>1.2`` and ``> = 1`` as the invalid ``>=`` ``1``, as node-semver reads them.
    """
    tokens = _glue(tokens, _GLUE_OPERATORS, before=_VERSION_START_RE)
    tokens = _glue(tokens, {"~", "~>"}, replacement="~")
    return _glue(tokens, {"^"})


def _glue(
    tokens: list[str],
    operators: Set[str],
    *,
    before: re.Pattern[str] | None = None,
    replacement: str | None = None,
) -> list[str]:
    """Join each token in operators with the token after it, if that one matches before; the
    operator is written as replacement if given. A joined token is not joined again."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if (
            tokens[i] in operators
            and i + 1 < len(tokens)
            and (before is None or before.match(tokens[i + 1]))
        ):
            out.append((tokens[i] if replacement is None else replacement) + tokens[i + 1])
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


@dataclass(frozen=True, slots=True)
class _Partial:
    """A possibly incomplete version from range text; None stands for x, X, * or absent."""

    prefix: str
    major: int | None
    minor: int | None
    patch: int | None
    prerelease: tuple[Identifier, ...]

    @property
    def complete(self) -> bool:
        return self.patch is not None and self.minor is not None and self.major is not None

    @property
    def wildcards_trail(self) -> bool:
        """False for ``x.1`` or ``1.x.3``: a number after a wildcard."""
        parts = (self.major, self.minor, self.patch)
        first_x = parts.index(None) if None in parts else 3
        return all(p is None for p in parts[first_x:])

    def version(self) -> Version:
        assert self.major is not None and self.minor is not None and self.patch is not None
        return Version(self.major, self.minor, self.patch, self.prerelease)


def _parse_partial(text: str) -> _Partial | None:
    if len(text) > MAX_VERSION_LENGTH:
        return None
    match = _PARTIAL_RE.fullmatch(text)
    if match is None:
        return None
    prefix, *numbers, pre = match.groups()
    major, minor, patch = (
        None if n in (None, "x", "X", "*") else _digits(n, _RANGE_EXPECTED) for n in numbers
    )
    return _Partial(prefix, major, minor, patch, _identifiers(pre))


def _bad_token(token: str) -> InvalidVersionError:
    return InvalidVersionError(f"{token!r} is not a version comparator; {_RANGE_EXPECTED}")


# A desugared comparator, or None for "any" (node-semver's empty comparator).
_Item = Comparator | None


def _cmp(op: Operator, major: int, minor: int, patch: int, pre: tuple[Identifier, ...] = ()) -> _Item:
    for number in (major, minor, patch):
        if number > MAX_SAFE_INTEGER:  # an upper bound one past a number given as 2**53 - 1
            raise InvalidVersionError(
                f"a bound of the range would be {_too_large(number)}; {_RANGE_EXPECTED}"
            )
    comparator = Comparator(op, Version(major, minor, patch, pre))
    # ">=0.0.0" is dropped as a no-op, as node-semver's replaceGTE0 does; it matters because a set
    # left empty counts as "*" when several sets are OR-ed (see _simplify).
    if op == ">=" and comparator.version == _ZERO:
        return None
    return comparator


def _below(major: int, minor: int, patch: int) -> _Item:
    """``<M.m.p-0``: below M.m.p and all of its prereleases."""
    return _cmp("<", major, minor, patch, (0,))


def _written(op: Operator, partial: _Partial, token: str) -> _Item:
    """A comparator whose complete version is used as written (``>=v1.2.3``).

    node-semver's final comparator grammar allows at most a ``v`` between operator and version,
    so other prefixes (``>==1.2.3``, ``vv1.2.3``) are invalid here although ``>==1.2`` is fine.
    A ``v`` prefix also keeps ``>=v0.0.0`` from being dropped as ``>=0.0.0`` is.
    """
    if partial.prefix not in ("", "v"):
        raise _bad_token(token)
    if partial.prefix == "v":
        return Comparator(op, partial.version())
    return _cmp(op, *_triple(partial), partial.prerelease)


def _triple(p: _Partial) -> tuple[int, int, int]:
    assert p.major is not None and p.minor is not None and p.patch is not None
    return p.major, p.minor, p.patch


def _caret(p: _Partial) -> list[_Item]:
    """``^`` allows changes that do not modify the left-most non-zero number."""
    if p.major is None:
        return [None]
    if p.minor is None:
        return [_cmp(">=", p.major, 0, 0), _below(p.major + 1, 0, 0)]
    if p.patch is None:
        upper = _below(0, p.minor + 1, 0) if p.major == 0 else _below(p.major + 1, 0, 0)
        return [_cmp(">=", p.major, p.minor, 0), upper]
    if p.major > 0:
        upper = _below(p.major + 1, 0, 0)
    elif p.minor > 0:
        upper = _below(0, p.minor + 1, 0)
    else:
        upper = _below(0, 0, p.patch + 1)
    return [_cmp(">=", p.major, p.minor, p.patch, p.prerelease), upper]


def _tilde(p: _Partial) -> list[_Item]:
    """``~`` allows patch changes if a minor is given, else minor changes."""
    if p.major is None:
        return [None]
    if p.minor is None:
        return [_cmp(">=", p.major, 0, 0), _below(p.major + 1, 0, 0)]
    if p.patch is None:
        return [_cmp(">=", p.major, p.minor, 0), _below(p.major, p.minor + 1, 0)]
    return [_cmp(">=", p.major, p.minor, p.patch, p.prerelease), _below(p.major, p.minor + 1, 0)]


def _xrange(op: str, p: _Partial, token: str) -> list[_Item]:
    """An optional operator before a partial: ``1.2.3``, ``>=1.2``, ``<=1.x``, ``1.2.*``."""
    if not p.wildcards_trail:
        raise _bad_token(token)
    if p.complete:
        return [_written(_OPERATOR_NAMES[op], p, token)]
    if p.major is None:
        return [_cmp("<", 0, 0, 0, (0,))] if op in ("<", ">") else [None]
    if op in ("", "="):
        if p.minor is None:
            return [_cmp(">=", p.major, 0, 0), _below(p.major + 1, 0, 0)]
        return [_cmp(">=", p.major, p.minor, 0), _below(p.major, p.minor + 1, 0)]
    # A comparison with a partial: the missing numbers are 0, and ">1.2" / "<=1.2" move to the
    # next minor (or major) so that every 1.2.x is excluded / included (node's replaceXRange).
    major, minor = p.major, 0 if p.minor is None else p.minor
    if op in (">", "<="):
        if p.minor is None:
            major += 1
        else:
            minor += 1
    if op in (">", ">="):
        return [_cmp(">=", major, minor, 0)]
    return [_below(major, minor, 0)]


_OPERATOR_NAMES: dict[str, Operator] = {
    "": "=", "=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
}


def _hyphen(low: str, high: str) -> list[_Item]:
    """``A - B``: from A (missing numbers are 0) up to B inclusive (missing numbers are any)."""
    a, b = _parse_partial(low), _parse_partial(high)
    if a is None:
        raise _bad_token(low)
    if b is None:
        raise _bad_token(high)
    items: list[_Item] = []
    if a.major is None:
        items.append(None)
    elif a.minor is None:
        items.append(_cmp(">=", a.major, 0, 0))
    elif a.patch is None:
        items.append(_cmp(">=", a.major, a.minor, 0))
    else:
        items.append(_written(">=", a, low))
    if b.major is None:
        items.append(None)
    elif b.minor is None:
        items.append(_below(b.major + 1, 0, 0))
    elif b.patch is None:
        items.append(_below(b.major, b.minor + 1, 0))
    elif b.prerelease:
        items.append(_cmp("<=", *_triple(b), b.prerelease))
    else:
        items.append(_written("<=", b, high))
    return items


def _parse_token(token: str) -> list[_Item]:
    match = _TOKEN_RE.fullmatch(token)
    assert match is not None  # the operator may be empty, so every token matches
    op, rest = match.groups()
    partial = _parse_partial(rest)
    if partial is None:
        raise _bad_token(token)
    if op == "^":
        return _caret(partial)
    if op in ("~", "~>"):
        return _tilde(partial)
    return _xrange(op, partial, token)


def _simplify_set(items: list[_Item]) -> ComparatorSet:
    """One AND-ed set, simplified as node-semver's parseRange does: a comparator that matches
    nothing replaces the set, duplicates go, "any" goes unless it is alone."""
    unique: dict[str, _Item] = {}
    for item in items:
        if item is not None and str(item) == _NOTHING:
            return (item,)
        unique.setdefault("" if item is None else str(item), item)
    return tuple(item for item in unique.values() if item is not None)


def _simplify(sets: list[ComparatorSet]) -> tuple[ComparatorSet, ...]:
    """node-semver's Range constructor: drop sets that match nothing, and if one set matches
    every release, keep only it. The latter changes answers for prereleases: in node-semver
    ``* || 1.2.3-beta`` does not contain 1.2.3-beta, and neither does it here."""
    if len(sets) > 1:
        first = sets[0]
        sets = [s for s in sets if not (len(s) == 1 and str(s[0]) == _NOTHING)] or [first]
        if len(sets) > 1 and () in sets:
            sets = [()]
    return tuple(sets)


def _set_contains(comparators: ComparatorSet, version: Version) -> bool:
    if not all(c.test(version) for c in comparators):
        return False
    if not version.prerelease:
        return True
    # A prerelease only matches a set that opts into prereleases of that very release.
    return any(
        c.version.prerelease
        and (c.version.major, c.version.minor, c.version.patch)
        == (version.major, version.minor, version.patch)
        for c in comparators
    )


def parse_version(text: str) -> Version:
    """`Version.parse`: strict semver 2.0.0, optional leading ``v``, ``=`` or ``=v``."""
    return Version.parse(text)


def parse_range(text: str) -> Range:
    """`Range.parse`: a node-semver range, with ``,`` also meaning AND."""
    return Range.parse(text)


def satisfies(version: Version | str, range: Range | str) -> bool:
    """Whether version is in range. Version text that does not parse gives False (as in npm);
    an invalid range raises `InvalidVersionError`."""
    spec = range if isinstance(range, Range) else Range.parse(range)
    return spec.contains(version)


def max_satisfying(versions: Iterable[str], range: Range | str) -> str | None:
    """The highest-precedence version in range, returned as the caller's string, or None.

    Text that is not a version is skipped; of versions with equal precedence (differing only in
    build metadata) the first wins, as in node-semver. An invalid range raises
    `InvalidVersionError` (node-semver returns null instead).
    """
    spec = range if isinstance(range, Range) else Range.parse(range)
    best: tuple[str, Version] | None = None
    for text in versions:
        try:
            version = Version.parse(text)
        except InvalidVersionError:
            continue
        if spec.contains(version) and (best is None or best[1] < version):
            best = (text, version)
    return None if best is None else best[0]


def is_range(text: str) -> bool:
    """Whether text parses as a range, which tells ``^1.2`` or ``1.x`` from tag names such as
    ``latest`` or ``bleedingedge``. Note that ``""``, ``*`` and ``x`` are ranges (any release)."""
    try:
        Range.parse(text)
    except InvalidVersionError:
        return False
    return True


def is_version(text: str) -> bool:
    """Whether text parses as a version (``1.2.3``, ``v1.2.3-rc.1``): tells a version from a
    model or tag name given in its place."""
    try:
        parse_version(text)
    except InvalidVersionError:
        return False
    return True


# Build dates that are plausible for a model zoo; an 8-digit number outside this is not a date.
_DATE_YEARS = range(1970, 2200)


def date_prerelease_hint(version: Version | str) -> str | None:
    """A warning when the prerelease looks like a date (``1.2.3-20220504``), else None.

    A date written as a prerelease makes the version sort before ``1.2.3`` and hides it from
    ranges such as ``^1.2``; build metadata (``1.2.3+20220504``) is almost always what was meant.
    The first prerelease identifier must be YYYYMMDD with a real calendar date. Raises
    `InvalidVersionError` when the text is not a version.
    """
    v = version if isinstance(version, Version) else Version.parse(version)
    if not v.prerelease or not isinstance(v.prerelease[0], int):
        return None
    digits = str(v.prerelease[0])
    if len(digits) != 8:
        return None
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if year not in _DATE_YEARS:
        return None
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return None
    release = Version(v.major, v.minor, v.patch)
    suggested = Version(
        v.major, v.minor, v.patch, (), tuple(str(i) for i in v.prerelease) + v.build
    )
    pre = ".".join(str(i) for i in v.prerelease)
    return (
        f"version {v} has the prerelease -{pre}, which looks like the date {date.isoformat()}: "
        f"a prerelease sorts before {release} and ranges such as ^{v.major}.{v.minor} skip it. "
        f"To record a date without those effects, use build metadata: {suggested}"
    )
