"""Tests for zoostore.core.semver: known answers, node-semver golden vectors and properties."""

from __future__ import annotations

import datetime
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from zoostore.core.errors import InvalidVersionError, UsageError, ZooError
from zoostore.core.semver import (
    MAX_SAFE_INTEGER,
    Comparator,
    Range,
    Version,
    date_prerelease_hint,
    is_range,
    is_version,
    max_satisfying,
    parse_range,
    parse_version,
    satisfies,
)

VECTORS = Path(__file__).parent / "data" / "semver_vectors.json"


# --- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", Version(0, 0, 0)),
        ("1.2.3", Version(1, 2, 3)),
        ("10.20.30", Version(10, 20, 30)),
        ("v1.2.3", Version(1, 2, 3)),
        ("=1.2.3", Version(1, 2, 3)),
        ("  1.2.3\n", Version(1, 2, 3)),
        ("1.2.3-alpha", Version(1, 2, 3, ("alpha",))),
        ("1.2.3-alpha.1", Version(1, 2, 3, ("alpha", 1))),
        ("1.2.3-0.3.7", Version(1, 2, 3, (0, 3, 7))),
        ("1.2.3-x.7.z.92", Version(1, 2, 3, ("x", 7, "z", 92))),
        ("1.2.3-0a.--", Version(1, 2, 3, ("0a", "--"))),
        ("1.2.3+20220504", Version(1, 2, 3, (), ("20220504",))),
        ("1.2.3+001.exp-sha", Version(1, 2, 3, (), ("001", "exp-sha"))),
        ("1.0.0-beta+exp.sha.5114f85", Version(1, 0, 0, ("beta",), ("exp", "sha", "5114f85"))),
        (f"{MAX_SAFE_INTEGER}.0.0", Version(MAX_SAFE_INTEGER, 0, 0)),
    ],
)
def test_parse_version(text: str, expected: Version) -> None:
    assert Version.parse(text) == expected
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "1.2.3-01", "1.2.3-alpha..1",
        "1.2.3-", "1.2.3+", "1.2.3+a..b", "V1.2.3", "vv1.2.3", "==1.2.3", "v=1.2.3", "latest",
        "1.2.3 4", "-1.2.3", "1.2.-3", "a.b.c", "1.2.3-beta_1", "1.2.3-α", "１.2.3",
        "9007199254740992.0.0", "1." + "9" * 5000 + ".0", "1.2.3-" + "a" * 300,
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(InvalidVersionError) as info:
        Version.parse(text)
    message = str(info.value)
    shown = text if len(text) <= 256 else text[:40]  # long text is shown shortened
    assert repr(shown) in message  # says what was given
    assert "expected MAJOR.MINOR.PATCH" in message and "1.2.3-rc.1" in message  # and an example
    assert isinstance(info.value, ValueError) and isinstance(info.value, UsageError)
    assert isinstance(info.value, ZooError)


def test_parse_version_explains_partials_and_leading_zeros() -> None:
    with pytest.raises(InvalidVersionError, match="2 of the 3 numbers"):
        Version.parse("1.2")
    with pytest.raises(InvalidVersionError, match="leading zero"):
        Version.parse("01.2.3")
    with pytest.raises(InvalidVersionError, match="larger than 9007199254740991"):
        Version.parse("9007199254740992.0.0")


@pytest.mark.parametrize(
    "fields",
    [
        (-1, 0, 0), (1, 2, True), (1.0, 2, 3), (2**53, 0, 0),
        (1, 2, 3, ("01",)), (1, 2, 3, ("7",)), (1, 2, 3, ("",)), (1, 2, 3, (-1,)),
        (1, 2, 3, ("a.b",)), (1, 2, 3, (), ("",)), (1, 2, 3, (), (1,)), (1, 2, 3, ["a"]),
    ],
)
def test_version_constructor_validates(fields: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidVersionError):
        Version(*fields)


def test_str_round_trips() -> None:
    for text in ["1.2.3", "1.2.3-alpha.1", "1.2.3+b.7", "1.0.0-x.7.z.92+exp.sha.5114f85"]:
        assert str(Version.parse(text)) == text
    assert str(Version.parse("v1.2.3")) == "1.2.3"


def test_precedence_chain_from_semver_org() -> None:
    # semver.org §11.4.
    chain = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.10.0", "2.0.0", "2.1.0",
        "2.1.1", "10.0.0",
    ]
    versions = [Version.parse(v) for v in chain]
    for lower, higher in zip(versions, versions[1:]):
        assert lower < higher and lower <= higher and higher > lower and higher >= lower
        assert not higher < lower
    assert sorted(reversed(versions)) == versions


def test_build_metadata_is_ignored_for_precedence_but_not_equality() -> None:
    a, b, plain = (Version.parse(t) for t in ("1.2.3+a", "1.2.3+b", "1.2.3"))
    assert a.key == b.key == plain.key
    assert not a < b and not b < a and a <= b and b <= a and a >= b
    assert a != b and a != plain and hash(a) != hash(b)
    assert a == Version.parse("1.2.3+a") and hash(a) == hash(Version.parse("1.2.3+a"))
    assert Version.parse("1.2.3+z") < Version.parse("1.2.4+a")


def test_is_prerelease() -> None:
    assert Version.parse("1.2.3-rc.1").is_prerelease
    assert not Version.parse("1.2.3").is_prerelease
    assert not Version.parse("1.2.3+20220504").is_prerelease


def test_comparisons_with_other_types() -> None:
    with pytest.raises(TypeError):
        _ = Version(1, 2, 3) < "1.2.4"
    text: object = "1.2.3"
    assert Version(1, 2, 3) != text


# --- ranges: known answers --------------------------------------------------------------------

# (range, version, expected), grouped by operator; answers agree with node-semver 7.
CONTAINS = [
    # exact
    ("1.2.3", "1.2.3", True), ("1.2.3", "1.2.4", False), ("=1.2.3", "1.2.3", True),
    ("v1.2.3", "1.2.3", True), ("=v1.2.3", "1.2.3", True), ("1.2.3", "v1.2.3", True),
    ("1.2.3-beta", "1.2.3-beta", True), ("1.2.3-beta", "1.2.3", False),
    # comparators
    (">1.2.3", "1.2.4", True), (">1.2.3", "1.2.3", False),
    (">=1.2.3", "1.2.3", True), (">=1.2.3", "1.2.2", False),
    ("<1.2.3", "1.2.2", True), ("<1.2.3", "1.2.3", False),
    ("<=1.2.3", "1.2.3", True), ("<=1.2.3", "1.2.4", False),
    (">= 1.2.3", "1.2.3", True), ("< 2", "1.9.9", True), ("< 2", "2.0.0", False),
    # comparators with partial versions
    (">1.2", "1.2.9", False), (">1.2", "1.3.0", True), (">1", "1.9.9", False), (">1", "2.0.0", True),
    (">=1.2", "1.2.0", True), (">=1.2", "1.1.9", False), ("<1.2", "1.1.9", True), ("<1.2", "1.2.0", False),
    ("<=1.2", "1.2.9", True), ("<=1.2", "1.3.0", False), ("<=1", "1.9.9", True), ("<=1", "2.0.0", False),
    ("=1.2", "1.2.5", True), (">*", "1.0.0", False), ("<*", "0.0.0", False), (">=*", "0.0.0", True),
    # AND: space or comma
    (">=1.2.7 <1.3.0", "1.2.8", True), (">=1.2.7 <1.3.0", "1.3.0", False),
    (">=1.2.7 <1.3.0", "1.2.6", False), (">=1.2, <2", "1.9.0", True), (">=1.2, <2", "2.0.0", False),
    (">=1.2,<2", "1.2.0", True), (">=1.2 , <2", "1.1.0", False),
    # OR
    ("1.2.7 || >=1.2.9 <2.0.0", "1.2.7", True), ("1.2.7 || >=1.2.9 <2.0.0", "1.2.8", False),
    ("1.2.7 || >=1.2.9 <2.0.0", "1.4.6", True), ("1.2.7||2", "2.5.0", True), ("1 || 3", "2.0.0", False),
    # hyphen
    ("1.2.3 - 2.3.4", "1.2.3", True), ("1.2.3 - 2.3.4", "2.3.4", True), ("1.2.3 - 2.3.4", "2.3.5", False),
    ("1.2 - 2.3.4", "1.2.0", True), ("1.2 - 2.3.4", "1.1.9", False),
    ("1.2.3 - 2.3", "2.3.9", True), ("1.2.3 - 2.3", "2.4.0", False),
    ("1.2.3 - 2", "2.9.9", True), ("1.2.3 - 2", "3.0.0", False), ("1.2 - 1.4", "1.4.7", True),
    ("* - 2", "0.0.0", True), ("1.2.3 - *", "9.9.9", True),
    # x-ranges
    ("*", "0.0.0", True), ("*", "9.9.9", True), ("", "1.2.3", True), ("x", "1.2.3", True),
    ("1.x", "1.0.0", True), ("1.x", "1.9.9", True), ("1.x", "2.0.0", False), ("1.x", "0.9.9", False),
    ("1.2.x", "1.2.0", True), ("1.2.x", "1.3.0", False), ("1.2.*", "1.2.9", True), ("1.X", "1.5.0", True),
    ("1", "1.5.0", True), ("1", "2.0.0", False), ("1.2", "1.2.7", True), ("1.2", "1.3.0", False),
    # tilde
    ("~1.2.3", "1.2.3", True), ("~1.2.3", "1.2.9", True), ("~1.2.3", "1.3.0", False),
    ("~1.2.3", "1.2.2", False),
    ("~1.2", "1.2.0", True), ("~1.2", "1.3.0", False), ("~1", "1.9.0", True), ("~1", "2.0.0", False),
    ("~0.2.3", "0.2.9", True), ("~0.2.3", "0.3.0", False), ("~>1.2", "1.2.5", True),
    ("~> 1.2.3", "1.3.0", False),
    ("~ 1.2", "1.2.1", True),
    # caret
    ("^1.2.3", "1.2.3", True), ("^1.2.3", "1.9.9", True), ("^1.2.3", "2.0.0", False),
    ("^1.2.3", "1.2.2", False),
    ("^1.2", "1.2.0", True), ("^1.2", "1.1.0", False), ("^1", "1.9.9", True), ("^1", "2.0.0", False),
    ("^0.2.3", "0.2.3", True), ("^0.2.3", "0.2.9", True), ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.3", True), ("^0.0.3", "0.0.4", False), ("^0.0", "0.0.9", True), ("^0.0", "0.1.0", False),
    ("^0", "0.9.9", True), ("^0", "1.0.0", False), ("^0.0.x", "0.0.5", True), ("^1.2.x", "1.9.0", True),
    ("^ 1.2", "1.3.0", True), ("^*", "3.0.0", True),
    # build metadata is ignored on both sides
    ("1.2.3", "1.2.3+20220504", True), ("1.2.3+build", "1.2.3", True), ("^1.2.3+build", "1.5.0+x", True),
    ("1.2.3+a - 2.0.0+b", "2.0.0+c", True), ("<1.2.3", "1.2.3+1", False),
    # not versions
    ("*", "1.2", False), ("*", "latest", False), ("*", "", False), ("*", "01.2.3", False),
]


@pytest.mark.parametrize(("spec", "version", "expected"), CONTAINS)
def test_contains(spec: str, version: str, expected: bool) -> None:
    assert satisfies(version, spec) is expected
    assert Range.parse(spec).contains(version) is expected
    if expected:
        assert Range.parse(spec).contains(Version.parse(version))


# Prereleases match only a set that names a prerelease of the same MAJOR.MINOR.PATCH.
PRERELEASES = [
    ("^1.2.3-beta.1", "1.2.3-beta.2", True),
    ("^1.2.3-beta.1", "1.2.3-beta.0", False),
    ("^1.2.3-beta.1", "1.2.4-beta", False),
    ("^1.2.3-beta.1", "1.9.0", True),
    (">=1.2.3-beta <2", "1.2.3-rc.1", True),
    (">=1.2.3-beta <2", "1.5.0-rc.1", False),
    (">1.2.3-alpha.3", "1.2.3-alpha.7", True),
    (">1.2.3-alpha.3", "3.4.5-alpha.9", False),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", False),
    ("*", "1.0.0-alpha", False),
    ("", "1.0.0-alpha", False),
    ("1.x", "1.5.0-rc.1", False),
    ("^1.2", "1.2.5-rc.1", False),
    (">=1.0.0", "1.2.3-rc.1", False),
    ("<2.0.0", "2.0.0-rc.1", False),
    ("<2.0.0-rc.2", "2.0.0-rc.1", True),
    ("1.2.3-pr.1 || 2", "1.2.3-pr.2", False),
    (">=1.2.3-pr.1 || 2", "1.2.3-pr.2", True),
    ("1.2.3-beta - 2.0.0-rc.1", "2.0.0-rc.0", True),
    ("1.2.3-beta - 2.0.0-rc.1", "1.5.0-rc.0", False),
    ("1.2.3-beta - 2.0.0-rc.1", "1.2.3-alpha", False),
    # node-semver quirk, kept: a set matching every release swallows the others.
    ("* || 1.2.3-beta", "1.2.3-beta", False),
    (">=0.0.0 || 1.2.3-beta", "1.2.3-beta", False),
    (">=v0.0.0 || 1.2.3-beta", "1.2.3-beta", True),
    ("1.x || 1.2.3-beta", "1.2.3-beta", True),
]


@pytest.mark.parametrize(("spec", "version", "expected"), PRERELEASES)
def test_prerelease_rule(spec: str, version: str, expected: bool) -> None:
    assert satisfies(version, spec) is expected


DESUGARED = [
    ("1.2.3", "1.2.3"), ("=1.2.3", "1.2.3"), ("v1.2.3", "1.2.3"), (">=1.2.7 <1.3.0", ">=1.2.7 <1.3.0"),
    ("^1.2.3", ">=1.2.3 <2.0.0-0"), ("^0.2.3", ">=0.2.3 <0.3.0-0"), ("^0.0.3", ">=0.0.3 <0.0.4-0"),
    ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"), ("^0.0.3-beta", ">=0.0.3-beta <0.0.4-0"),
    ("^1.2.x", ">=1.2.0 <2.0.0-0"), ("^0.0.x", "<0.1.0-0"), ("^0.0", "<0.1.0-0"),
    ("^1.x", ">=1.0.0 <2.0.0-0"),
    ("^0.x", "<1.0.0-0"), ("~1.2.3", ">=1.2.3 <1.3.0-0"), ("~1.2", ">=1.2.0 <1.3.0-0"),
    ("~1", ">=1.0.0 <2.0.0-0"), ("~0.2.3", ">=0.2.3 <0.3.0-0"), ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
    ("1.x", ">=1.0.0 <2.0.0-0"), ("1.2.x", ">=1.2.0 <1.3.0-0"), ("*", ""), ("", ""), ("x", ""),
    (">1.2", ">=1.3.0"), (">1", ">=2.0.0"), ("<=1.2", "<1.3.0-0"), ("<1.2", "<1.2.0-0"), (">=1.2", ">=1.2.0"),
    (">*", "<0.0.0-0"), ("<=*", ""), ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4"), ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"),
    ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"), ("1.2.3 - 2", ">=1.2.3 <3.0.0-0"),
    ("1.2.7 || >=1.2.9 <2.0.0", "1.2.7||>=1.2.9 <2.0.0"), (">=1.2, <2", ">=1.2.0 <2.0.0-0"),
    (">=1.0.0 >=1.0.0", ">=1.0.0"), ("* >=1.0.0", ">=1.0.0"), ("<0.0.0-0 || 1", ">=1.0.0 <2.0.0-0"),
    ("1 || *", ""), ("1 || || 2", ""), ("^1.x.3", ">=1.0.0 <2.0.0-0"), ("==1.2", ">=1.2.0 <1.3.0-0"),
    ("+build", ""), ("1 - =2.0.0-beta", ">=1.0.0 <=2.0.0-beta"),
    # node-semver's whitespace handling, reproduced
    ("~ > 1.2", ">=1.2.0 <1.3.0-0"), ("~ >= v0.3.2", ">=0.3.2 <0.4.0-0"), ("v 1.2 - 2", ">=1.2.0 <3.0.0-0"),
    ("= = 1 - 2", ">=1.0.0 <3.0.0-0"), ("~> >1.2", ">=1.2.0 <1.3.0-0"), ("~= 12", ">=12.0.0 <13.0.0-0"),
    ("~>= 0", "<1.0.0-0"), ("^= 1.2", ">=1.2.0 <2.0.0-0"), ("> =1", ">=1.0.0"),
]


@pytest.mark.parametrize(("spec", "expected"), DESUGARED)
def test_desugared(spec: str, expected: str) -> None:
    assert Range.parse(spec).desugared == expected


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("^1.2", "^1.2"), ("  >=  1.2 ,   <2 ", ">=1.2 <2"), ("1.2 - 1.4", "1.2 - 1.4"), ("", "*"),
        ("^1.2.3+build.7||~ 2", "^1.2.3 || ~2"), ("1 ||", "1 || *"),
    ],
)
def test_str_of_range(spec: str, text: str) -> None:
    assert str(Range.parse(spec)) == text
    assert parse_range(str(Range.parse(spec))).sets == Range.parse(spec).sets


def test_range_sets_are_comparators() -> None:
    assert Range.parse("^1.2 || 3.0.0").sets == (
        (Comparator(">=", Version(1, 2, 0)), Comparator("<", Version(2, 0, 0, (0,)))),
        (Comparator("=", Version(3, 0, 0)),),
    )
    assert Range.parse("*").sets == ((),)


INVALID_RANGES = [
    "latest", "bleedingedge", "1.2.3.4", "01.2", ">>1", "~", "^", "=", ">=", "x.1", "1.x.3", "1.2-beta",
    "-", "1 | 2", "v", "1.2.3-", "1.2.3-01", "V1.2.3", "a.b.c", "==1.2.3", "vv1.2.3", "=1.2.3 - 2",
    "1 - =2.0.0", ">=1.2.3 - 2", "1.2.3 -2", "1 - 2 - 3", "^>1", "~~1", ">= = 1", "1.2.", "1..2",
    ">=9007199254740992.0.0", "^9007199254740991.1", "1.2.3 latest", "1.2.3 ||| 2", "v 1.2.3 - 2",
    "1 - v 2.0.0", "~ ~ 1", "^ ~ 1", "> v 1", "> = 1", "~>= = 1",
    # accepted by node-semver by accident of its star-stripping step; a documented deviation
    "1.2.3*", ">=*1.2.3", ">*1.2.3",
]


@pytest.mark.parametrize("spec", INVALID_RANGES)
def test_invalid_ranges_raise(spec: str) -> None:
    with pytest.raises(InvalidVersionError) as info:
        Range.parse(spec)
    assert repr(spec) in str(info.value)
    assert "expected comparators such as" in str(info.value)
    with pytest.raises(InvalidVersionError):
        satisfies("1.2.3", spec)
    with pytest.raises(InvalidVersionError):
        max_satisfying(["1.2.3"], spec)
    assert not is_range(spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("^1.2", True), ("1.2.3", True), ("~1.2.3", True), ("1.x", True), ("*", True), ("x", True),
        ("", True), (">=1.2 <2", True), (">=1.2, <2", True), ("1.2 - 1.4", True), ("1 || 2", True),
        ("v1.2.3", True), ("latest", False), ("bleedingedge", False), ("stable", False),
        ("nightly-2022", False), ("rc", False), ("v", False),
    ],
)
def test_is_range(text: str, expected: bool) -> None:
    assert is_range(text) is expected


def test_non_string_input_raises_invalid_version_error() -> None:
    with pytest.raises(InvalidVersionError):
        Range.parse(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidVersionError):
        Version.parse(123)  # type: ignore[arg-type]


def test_equals_prefix_is_a_documented_deviation() -> None:
    # node-semver's strict parser rejects "=1.2.3" as a version; zoostore accepts it.
    assert satisfies("=1.2.3", "1.2.3")


# --- max_satisfying ---------------------------------------------------------------------------

def test_max_satisfying() -> None:
    versions = ["1.2.3", "v1.3.0", "1.3.0+b", "1.10.0-rc.1", "2.0.0", "latest", "1.2"]
    assert max_satisfying(versions, "^1.2") == "v1.3.0"  # original string, first of equals
    assert max_satisfying(versions, "~1.2") == "1.2.3"
    assert max_satisfying(versions, ">=1.10.0-rc.0 <2") == "1.10.0-rc.1"
    assert max_satisfying(versions, "*") == "2.0.0"
    assert max_satisfying(versions, "^3") is None
    assert max_satisfying([], "*") is None
    assert max_satisfying(iter(versions), Range.parse("1.x")) == "v1.3.0"


# --- date-like prereleases --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("version", "suggestion"),
    [
        ("1.2.3-20220504", "1.2.3+20220504"),
        ("v1.2.3-20220504", "1.2.3+20220504"),
        ("1.2.3-20240229", "1.2.3+20240229"),
        ("1.2.3-20220504.1", "1.2.3+20220504.1"),
        ("1.2.3-20220504+sha.5", "1.2.3+20220504.sha.5"),
        ("0.1.0-19991231", "0.1.0+19991231"),
    ],
)
def test_date_prerelease_hint(version: str, suggestion: str) -> None:
    hint = date_prerelease_hint(version)
    assert hint is not None
    assert hint.endswith(suggestion)
    assert Version.parse(version.lstrip("v").split("+")[0]).__str__() in hint
    assert not Version.parse(suggestion).is_prerelease


@pytest.mark.parametrize(
    "version",
    [
        "1.2.3", "1.2.3+20220504", "1.2.3-rc.1", "1.2.3-rc.20220504", "1.2.3-20221304",
        "1.2.3-20220230", "1.2.3-20230229", "1.2.3-12345678", "1.2.3-2022050", "1.2.3-202205040",
        "1.2.3-20220504a", "1.2.3-99991231",
    ],
)
def test_no_date_prerelease_hint(version: str) -> None:
    assert date_prerelease_hint(version) is None
    assert date_prerelease_hint(Version.parse(version)) is None


def test_date_prerelease_hint_rejects_non_versions() -> None:
    with pytest.raises(InvalidVersionError):
        date_prerelease_hint("20220504")


# --- golden vectors from node-semver ----------------------------------------------------------

@lru_cache(maxsize=1)
def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _bit(mask: str, i: int) -> bool:
    return bool(int(mask[i >> 2], 16) >> (i & 3) & 1)


def test_vectors_are_substantial() -> None:
    data = _vectors()
    valid = [r for r in data["ranges"] if r["ok"]]
    assert len(data["ranges"]) >= 2000 and len(valid) >= 1500
    assert len(valid) * len(data["versions"]) >= 100_000  # (version, range) cases


def test_vectors_version_validity_and_order() -> None:
    data = _vectors()
    problems = []
    parsed: dict[int, Version] = {}
    for i, (text, normalised) in enumerate(zip(data["versions"], data["valid"])):
        try:
            version = Version.parse(text)
        except InvalidVersionError:
            if normalised is not None:
                problems.append(f"{text!r}: rejected, node reads {normalised}")
            continue
        if normalised is None:
            problems.append(f"{text!r}: accepted as {version}, node rejects it")
            continue
        parsed[i] = version
        if str(Version(version.major, version.minor, version.patch, version.prerelease)) != normalised:
            problems.append(f"{text!r}: {version}, node {normalised}")
    for i, version in parsed.items():
        lower = sum(other < version for other in parsed.values())
        if lower != data["rank"][i]:
            problems.append(f"{data['versions'][i]!r}: {lower} versions below, node {data['rank'][i]}")
    assert not problems, "\n".join(problems[:20])


def test_vectors_range_validity_and_desugaring() -> None:
    problems = []
    for case in _vectors()["ranges"]:
        try:
            spec = Range.parse(case["r"])
        except InvalidVersionError as exc:
            if case["ok"]:
                problems.append(f"{case['r']!r}: rejected ({exc}), node reads {case['d']!r}")
            continue
        if not case["ok"]:
            problems.append(f"{case['r']!r}: accepted as {spec.desugared!r}, node rejects it")
        elif spec.desugared != case["d"]:
            problems.append(f"{case['r']!r}: desugared {spec.desugared!r}, node {case['d']!r}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:20])


def test_vectors_satisfies() -> None:
    data = _vectors()
    versions: list[str] = data["versions"]
    problems = []
    checked = 0
    for case in data["ranges"]:
        if not case["ok"]:
            continue
        spec = Range.parse(case["r"])
        for i, version in enumerate(versions):
            checked += 1
            expected = _bit(case["m"], i)
            if satisfies(version, spec) is not expected:
                problems.append(f"satisfies({version!r}, {case['r']!r}) is {not expected}, node {expected}")
    assert checked >= 100_000
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:20])


def test_vectors_max_satisfying() -> None:
    data = _vectors()
    versions: list[str] = data["versions"]
    problems = []
    for case in data["ranges"]:
        if not case["ok"]:
            continue
        spec = Range.parse(case["r"])
        for indices, expected in ((range(len(versions)), case["x"]), tuple(case["s"])):
            chosen = [versions[i] for i in indices]
            got = max_satisfying(chosen, spec)
            want = None if expected == -1 else versions[expected]
            # Identity, not equality: the first of equal strings must come back.
            if got != want or (got is not None and list(indices)[chosen.index(got)] != expected):
                problems.append(f"max_satisfying({chosen}, {case['r']!r}) = {got!r}, node {want!r}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:20])


def test_vectors_str_round_trips() -> None:
    for case in _vectors()["ranges"]:
        if case["ok"]:
            spec = Range.parse(case["r"])
            assert Range.parse(str(spec)) == spec, case["r"]


# --- properties -------------------------------------------------------------------------------

numbers = st.integers(min_value=0, max_value=4)
identifiers = st.one_of(
    st.integers(min_value=0, max_value=12),
    st.sampled_from(["alpha", "beta", "rc", "a-b", "0a", "-", "x"]),
)
versions = st.builds(
    Version,
    numbers,
    numbers,
    numbers,
    st.one_of(st.just(()), st.lists(identifiers, min_size=1, max_size=3).map(tuple)),
    st.one_of(st.just(()), st.lists(st.sampled_from(["b1", "20220504", "exp-7"]), max_size=2).map(tuple)),
)
releases = st.builds(Version, numbers, numbers, numbers)
partials = st.one_of(
    versions.map(lambda v: str(Version(v.major, v.minor, v.patch, v.prerelease))),
    st.tuples(numbers, st.one_of(numbers, st.sampled_from(["x", "*"]))).map(lambda t: f"{t[0]}.{t[1]}"),
    numbers.map(str),
    st.sampled_from(["*", "x", "1.2.x", "0.x"]),
)
simples = st.tuples(st.sampled_from(["", "=", "<", "<=", ">", ">=", "^", "~", "~>"]), partials).map("".join)
comparator_sets = st.one_of(
    st.lists(simples, min_size=1, max_size=3).map(" ".join),
    st.tuples(partials, partials).map(" - ".join),
)
ranges = st.lists(comparator_sets, min_size=1, max_size=3).map(" || ".join)


@given(versions, versions, versions)
def test_order_is_a_total_preorder(a: Version, b: Version, c: Version) -> None:
    assert [a < b, a.key == b.key, a > b].count(True) == 1
    assert (a <= b) == (not b < a) and (a >= b) == (not a < b)
    if a <= b and b <= c:
        assert a <= c
    if a == b:
        assert a.key == b.key and hash(a) == hash(b)


@given(st.lists(versions, max_size=12))
def test_sorting_agrees_with_keys(items: list[Version]) -> None:
    ordered = sorted(items)
    assert all(x <= y for x, y in zip(ordered, ordered[1:]))
    assert [v.key for v in ordered] == sorted(v.key for v in items)


@given(versions)
def test_version_round_trips_and_satisfies_itself(v: Version) -> None:
    assert Version.parse(str(v)) == v
    assert Version.parse("v" + str(v)) == v
    assert satisfies(str(v), str(v))
    assert satisfies(v, "=" + str(v))
    assert satisfies(v, f">={v} <={v}")


@given(versions, ranges)
def test_contains_text_and_value_agree(v: Version, spec: str) -> None:
    try:
        parsed = Range.parse(spec)
    except InvalidVersionError:
        return
    assert parsed.contains(str(v)) is parsed.contains(v)
    assert Range.parse(str(parsed)).sets == parsed.sets


@given(st.lists(versions.map(str), max_size=10), ranges)
def test_max_satisfying_is_the_largest_member_that_satisfies(items: list[str], spec: str) -> None:
    try:
        parsed = Range.parse(spec)
    except InvalidVersionError:
        return
    best = max_satisfying(items, parsed)
    members = [Version.parse(t) for t in items if satisfies(t, parsed)]
    if best is None:
        assert not members
    else:
        assert best in items and satisfies(best, parsed)
        assert not any(m > Version.parse(best) for m in members)


@given(releases.filter(lambda r: r.major > 0), versions)
def test_caret_is_up_to_next_major(base: Version, v: Version) -> None:
    assert satisfies(v, f"^{base}") == satisfies(v, f">={base} <{base.major + 1}.0.0")


@given(st.integers(min_value=1, max_value=4), numbers, versions)
def test_caret_zero_major_is_up_to_next_minor(minor: int, patch: int, v: Version) -> None:
    assert satisfies(v, f"^0.{minor}.{patch}") == satisfies(v, f">=0.{minor}.{patch} <0.{minor + 1}.0")


@given(numbers, versions)
def test_caret_zero_zero_is_exact_patch(patch: int, v: Version) -> None:
    assert satisfies(v, f"^0.0.{patch}") == satisfies(v, f"0.0.{patch}")


@given(releases, versions)
def test_tilde_is_up_to_next_minor(base: Version, v: Version) -> None:
    assert satisfies(v, f"~{base}") == satisfies(v, f">={base} <{base.major}.{base.minor + 1}.0")


@given(numbers, numbers, versions)
def test_x_ranges(major: int, minor: int, v: Version) -> None:
    assert satisfies(v, f"{major}.{minor}.x") == satisfies(v, f">={major}.{minor}.0 <{major}.{minor + 1}.0")
    assert satisfies(v, f"{major}.x") == satisfies(v, f">={major}.0.0 <{major + 1}.0.0")
    assert satisfies(v, f"{major}") == satisfies(v, f"{major}.x.x")
    assert satisfies(v, "*") == (not v.is_prerelease)


@given(releases, releases, versions)
def test_hyphen_is_inclusive_bounds(low: Version, high: Version, v: Version) -> None:
    assert satisfies(v, f"{low} - {high}") == satisfies(v, f">={low} <={high}")


@given(comparator_sets, comparator_sets, versions)
def test_comma_means_and_and_bars_mean_or(a: str, b: str, v: Version) -> None:
    assume(" - " not in a + b)  # a hyphen range cannot be AND-ed with anything
    both = satisfies(v, a) and satisfies(v, b)
    assert satisfies(v, f"{a}, {b}") == satisfies(v, f"{a} {b}")
    if v.is_prerelease:
        # node-semver: a prerelease passes a set when any comparator of the set names a prerelease
        # of its own [major, minor, patch], so `0 0.0.0-0.2` admits 0.0.0-0.2 although `0` does not.
        assert satisfies(v, f"{a} {b}") >= both
    else:
        assert satisfies(v, f"{a} {b}") == both
    either = satisfies(v, a) or satisfies(v, b)
    if v.is_prerelease:
        # node-semver quirk: a set that matches every release (*) swallows the others.
        assert satisfies(v, f"{a} || {b}") <= either
    else:
        assert satisfies(v, f"{a} || {b}") == either


@given(ranges.filter(lambda r: "-" not in r), versions.filter(lambda v: v.is_prerelease))
def test_prerelease_needs_a_prerelease_comparator(spec: str, v: Version) -> None:
    # Without "-" the range names no prerelease, so no prerelease version can match it.
    assert not satisfies(v, spec)


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text: str) -> None:
    assert is_range(text) in (True, False)
    try:
        Version.parse(text)
    except InvalidVersionError:
        pass
    try:
        satisfies(text, "*")
    except InvalidVersionError:  # pragma: no cover - an invalid version is False, not an error
        pytest.fail("satisfies raised for an invalid version")


@given(st.dates(min_value=datetime.date(1970, 1, 1), max_value=datetime.date(2199, 12, 31)), releases)
def test_every_date_prerelease_gets_a_hint(date: datetime.date, base: Version) -> None:
    stamp = date.strftime("%Y%m%d")
    hint = date_prerelease_hint(f"{base}-{stamp}")
    assert hint is not None and hint.endswith(f"{base}+{stamp}")


def test_overlong_range_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidVersionError, match="longest range zoostore reads is 1024"):
        Range.parse("1 " * 32_000)


@pytest.mark.parametrize("text, ends", [
    ("1.2 - 1.4", ("1.2", "1.4")), ("v1.2.3 - =2", ("v1.2.3", "=2")), ("v 1 - 2", ("v 1", "2")),
    ("1 - 2 - 3", None), ("1.2 -1.4", None), ("a b - c", None),
])
def test_hyphen_split_matches_node_semvers_grammar(text: str, ends: tuple[str, str] | None) -> None:
    from zoostore.core.semver import _split_hyphen

    assert _split_hyphen(text) == ends


# -- MODEL@SPEC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, model, spec, explicit", [
    ("yolo", "yolo", "latest", False),
    (" yolo@^1.2 ", "yolo", "^1.2", True),
    ("yolo@1.2.0", "yolo", "1.2.0", True),
    ("yolo@bleedingedge", "yolo", "bleedingedge", True),
    ("yolo@latest", "yolo", "latest", True),
    ("yolo@>=1.2 <2", "yolo", ">=1.2 <2", True),
    ("y.o-l_o@ 1.x ", "y.o-l_o", "1.x", True),
])
def test_model_spec_parses_model_and_spec(text: str, model: str, spec: str, explicit: bool) -> None:
    from zoostore.core.spec import ModelSpec

    parsed = ModelSpec.parse(text)
    assert (parsed.model, parsed.spec, parsed.explicit) == (model, spec, explicit)
    assert str(parsed) == f"{model}@{spec}"


@pytest.mark.parametrize("text, message", [
    ("yolo@", "empty range after '@'"),
    ("@^1", "invalid model name ''"),
    ("../x@1", "invalid model name"),
    ("a/b", "invalid model name"),
])
def test_model_spec_refuses_bad_text(text: str, message: str) -> None:
    from zoostore.core.spec import ModelSpec

    with pytest.raises(UsageError, match=re.escape(message)):
        ModelSpec.parse(text)


@pytest.mark.parametrize("text, expected", [("1.2.3", True), ("v1.2.3-rc.1+b5", True), ("1.2", False),
                                            ("^1.2", False), ("stable", False), ("m1", False), ("", False)])
def test_is_version(text: str, expected: bool) -> None:
    assert is_version(text) is expected
