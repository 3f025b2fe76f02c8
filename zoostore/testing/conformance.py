"""The backend conformance suite: every `Backend` runs it (rule 11 of STYLE.md).

A backend joins by subclassing and providing fixtures, like `fsspec.tests.abstract`:

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path): return MyBackend(tmp_path)   # empty, writable

- `ReadConformance`: reads only. Needs `backend` and a `seed(key, data)` fixture that puts an
  object behind the backend's back (the default writes through `backend.put_if_absent`; a
  read-only backend overrides it to write where its server reads from).
- `BackendConformance(ReadConformance)`: the full contract for writable backends. Knobs:
  `many_keys` (objects in the batched-delete test; above 1,000 for S3), `age(backend, key)`
  (move an object's mtime into the past, or return False if the backend cannot; `freshen` is then
  checked after `freshen_wait` seconds), `mtime_slack` (clock resolution, e.g. 1 s on S3).
  Tests that need atomic CAS skip, saying why, when `capabilities.atomic_cas` is False; a
  backend whose server may lack it must refuse `put_cas` unless `single_writer` is set.
- `ReadOnlyConformance(ReadConformance)`: reads plus "every write raises ReadOnlyError".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from zoostore.storage.backends.base import Backend, ObjectInfo
from zoostore.core.errors import ConflictError, ObjectNotFoundError, ReadOnlyError, ZooError

#: 10,000 bytes where every offset is distinguishable from its neighbours' (i mod 251, a prime).
PAYLOAD = bytes(i % 251 for i in range(10_000))

OBJECTS: dict[str, bytes] = {
    "zoostore.toml": b"format = 1\n",
    "packs/3f/3fa9e1": PAYLOAD,
    "packs/a0/a01234": b"another pack",
    "blobs/3f/3fb0": b"recipe",
    "manifests/yolo-v2-tiny.toml": b'format = 1\nmodel = "yolo-v2-tiny"\n',
    "manifests/odd name+plus.toml": b"keys with a space and a plus",
    "empty": b"",
}

MISSING = "packs/ff/does-not-exist"

SeedFn = Callable[[str, bytes], None]


class ReadConformance:
    """Reads: get, get_range, get_ranges, stat, exists, get_versioned, now, missing keys."""

    #: Tolerance between `stat().mtime` and `now()`: clock resolution plus test latency.
    mtime_slack: float = 5.0

    @pytest.fixture
    def seed(self, backend: Backend) -> SeedFn:
        def write(key: str, data: bytes) -> None:
            assert backend.put_if_absent(key, data) is True

        return write

    @pytest.fixture
    def seeded(self, seed: SeedFn) -> dict[str, bytes]:
        for key, data in OBJECTS.items():
            seed(key, data)
        return OBJECTS

    def test_get_returns_whole_objects(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        for key, data in seeded.items():
            assert backend.get(key) == data, key

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, 1), (0, 100), (1, 2), (250, 503), (4_096, 8_192), (9_999, 10_000), (0, 10_000)],
    )
    def test_get_range(self, backend: Backend, seeded: dict[str, bytes], start: int, end: int) -> None:
        assert backend.get_range("packs/3f/3fa9e1", start, end) == PAYLOAD[start:end]

    @pytest.mark.parametrize(
        ("start", "end"), [(9_990, 10_100), (0, 20_000), (10_000, 10_010), (12_000, 13_000), (77, 77)]
    )
    def test_get_range_past_the_end(self, backend: Backend, seeded: dict[str, bytes], start: int, end: int) -> None:
        assert backend.get_range("packs/3f/3fa9e1", start, end) == PAYLOAD[start:end]

    @pytest.mark.parametrize(("start", "size"), [(0, 10_000), (250, 253), (9_990, 110), (12_000, 5), (77, 0)])
    def test_get_range_into(self, backend: Backend, seeded: dict[str, bytes], start: int, size: int) -> None:
        buf = bytearray(b"\xaa" * size)
        got = backend.get_range_into("packs/3f/3fa9e1", start, buf)
        assert got == len(PAYLOAD[start : start + size]) and buf[:got] == PAYLOAD[start : start + size]

    def test_get_range_of_empty_object(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        assert backend.get_range("empty", 0, 10) == b""

    def test_get_ranges(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        ranges = [(0, 10), (5, 15), (9_000, 9_500), (100, 101), (9_995, 10_050), (20_000, 20_001)]
        assert backend.get_ranges("packs/3f/3fa9e1", ranges) == [PAYLOAD[s:e] for s, e in ranges]

    def test_stat_size_and_mtime(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        now = backend.now()
        for key, data in seeded.items():
            info = backend.stat(key)
            assert isinstance(info, ObjectInfo)
            assert (info.key, info.size) == (key, len(data))
            assert now - 600 <= info.mtime <= now + self.mtime_slack, (key, info.mtime, now)

    def test_exists(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        assert backend.exists("packs/3f/3fa9e1")
        assert backend.exists("empty")
        assert not backend.exists(MISSING)
        assert not backend.exists("packs/3f")  # a "directory" is not an object

    def test_get_versioned(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        first = backend.get_versioned("manifests/yolo-v2-tiny.toml")
        assert first.data == seeded["manifests/yolo-v2-tiny.toml"]
        assert isinstance(first.token, str) and first.token
        assert backend.get_versioned("manifests/yolo-v2-tiny.toml").token == first.token

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda b, k: b.get(k), id="get"),
            pytest.param(lambda b, k: b.get_range(k, 0, 10), id="get_range"),
            pytest.param(lambda b, k: b.get_range(k, 3, 3), id="get_range-empty"),
            pytest.param(lambda b, k: b.get_ranges(k, [(0, 1)]), id="get_ranges"),
            pytest.param(lambda b, k: b.get_range_into(k, 0, bytearray(10)), id="get_range_into"),
            pytest.param(lambda b, k: b.stat(k), id="stat"),
            pytest.param(lambda b, k: b.get_versioned(k), id="get_versioned"),
        ],
    )
    def test_missing_key_raises_not_found(
        self, backend: Backend, seeded: dict[str, bytes], call: Callable[[Backend, str], Any]
    ) -> None:
        with pytest.raises(ObjectNotFoundError) as info:
            call(backend, MISSING)
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, ZooError)
        assert info.value.key == MISSING
        assert MISSING in str(info.value)

    def test_now_is_close_to_this_clock(self, backend: Backend) -> None:
        # Loopback stores share this machine's clock; real stores may drift, but not by minutes.
        assert abs(backend.now() - time.time()) < 60

    def test_url_is_set(self, backend: Backend) -> None:
        assert isinstance(backend.url, str) and backend.url


class BackendConformance(ReadConformance):
    """The whole contract of a writable `Backend`. Subclasses provide `backend` (empty)."""

    many_keys: int = 150
    #: Seconds to wait before `freshen` when `age` cannot move an mtime into the past.
    freshen_wait: float = 0.05
    threads: int = 12

    def age(self, backend: Backend, key: str, seconds: float) -> bool:
        """Move `key`'s mtime `seconds` into the past; False if this backend cannot."""
        return False

    def _require_atomic(self, backend: Backend) -> None:
        if not backend.capabilities.atomic_cas:
            pytest.skip(f"{type(backend).__name__} documents non-atomic put_if_absent/put_cas")

    # -- capabilities ------------------------------------------------------------------------

    def test_capabilities_allow_writes(self, backend: Backend) -> None:
        caps = backend.capabilities
        assert caps.writes and caps.deletes and caps.listing

    # -- put_if_absent -----------------------------------------------------------------------

    def test_put_if_absent_writes_once_and_never_overwrites(self, backend: Backend) -> None:
        assert backend.put_if_absent("blobs/aa/one", b"first") is True
        assert backend.put_if_absent("blobs/aa/one", b"second, longer") is False
        assert backend.get("blobs/aa/one") == b"first"
        assert backend.stat("blobs/aa/one").size == len(b"first")

    def test_put_if_absent_creates_parents_and_empty_objects(self, backend: Backend) -> None:
        assert backend.put_if_absent("a/b/c/d/e", b"") is True
        assert backend.get("a/b/c/d/e") == b""
        assert backend.exists("a/b/c/d/e")

    def test_put_if_absent_concurrent_exactly_one_wins(self, backend: Backend) -> None:
        self._require_atomic(backend)
        barrier = threading.Barrier(self.threads)

        def write(i: int) -> bool:
            barrier.wait()
            return backend.put_if_absent("packs/77/race", f"writer {i}".encode())

        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(write, range(self.threads)))
        assert results.count(True) == 1, results
        assert backend.get("packs/77/race") == f"writer {results.index(True)}".encode()

    # -- put_cas -------------------------------------------------------------------------------

    def test_put_cas_create_update_and_conflicts(self, backend: Backend) -> None:
        key = "manifests/m.toml"
        created = backend.put_cas(key, b"v1", expected=None)
        assert isinstance(created, str) and created
        assert backend.get_versioned(key).token == created
        assert backend.get(key) == b"v1"

        with pytest.raises(ConflictError):
            backend.put_cas(key, b"again", expected=None)  # create, but it exists

        updated = backend.put_cas(key, b"v2", expected=created)
        assert backend.get_versioned(key).token == updated
        assert updated != created

        with pytest.raises(ConflictError) as info:
            backend.put_cas(key, b"v3 from a stale read", expected=created)
        assert isinstance(info.value, ZooError) and key in str(info.value)
        assert backend.get_versioned(key).data == b"v2"

    def test_put_cas_only_where_atomic_or_single_writer(self, backend: Backend) -> None:
        # Compare-and-swap is checked, not assumed: a backend that let a manifest write through
        # either showed atomic conditional writes (capabilities, after any probe) or was told
        # that one process writes at a time.
        backend.put_cas("manifests/probe.toml", b"x", expected=None)
        assert backend.capabilities.atomic_cas or backend.single_writer

    def test_put_cas_expected_token_on_absent_key_conflicts(self, backend: Backend) -> None:
        token = backend.put_cas("manifests/gone.toml", b"x", expected=None)
        backend.delete(["manifests/gone.toml"])
        with pytest.raises(ConflictError):
            backend.put_cas("manifests/gone.toml", b"y", expected=token)
        assert not backend.exists("manifests/gone.toml")

    def test_put_overwrites(self, backend: Backend) -> None:
        backend.put("state/x", b"1")
        backend.put("state/x", b"22")
        assert backend.get("state/x") == b"22"

    def test_put_cas_threaded_counter(self, backend: Backend) -> None:
        self._require_atomic(backend)
        key = "manifests/counter.toml"
        barrier = threading.Barrier(self.threads)

        def increment(_: int) -> int:
            barrier.wait()
            for attempt in range(500):
                try:
                    current = backend.get_versioned(key)
                except ObjectNotFoundError:
                    value, token = 0, None
                else:
                    value, token = int(current.data), current.token
                try:
                    backend.put_cas(key, str(value + 1).encode(), expected=token)
                except ConflictError:
                    time.sleep(0.001 * (attempt % 10))
                    continue
                return attempt
            raise AssertionError("no progress after 500 attempts")

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(increment, range(self.threads)))
        assert int(backend.get(key)) == self.threads

    # -- list ----------------------------------------------------------------------------------

    def test_list_with_prefixes(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        backend.put_if_absent("packs2/not-under-packs", b"x")
        backend.put_cas("manifests/cas.toml", b"cas", expected=None)  # bookkeeping must not show
        expected = {**seeded, "packs2/not-under-packs": b"x", "manifests/cas.toml": b"cas"}

        def listed(prefix: str) -> dict[str, int]:
            return {info.key: info.size for info in backend.list(prefix)}

        assert listed("") == {k: len(v) for k, v in expected.items()}
        assert listed("packs/") == {"packs/3f/3fa9e1": 10_000, "packs/a0/a01234": 12}
        assert listed("packs/3f/") == {"packs/3f/3fa9e1": 10_000}
        assert listed("manifests/") == {
            "manifests/yolo-v2-tiny.toml": len(seeded["manifests/yolo-v2-tiny.toml"]),
            "manifests/odd name+plus.toml": len(seeded["manifests/odd name+plus.toml"]),
            "manifests/cas.toml": 3,
        }
        assert listed("nothing/") == {}
        assert listed("packs/ff/") == {}

    def test_list_mtimes_match_stat(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        now = backend.now()
        for info in backend.list("packs/"):
            assert now - 600 <= info.mtime <= now + self.mtime_slack
            assert abs(info.mtime - backend.stat(info.key).mtime) <= 1.0

    # -- delete --------------------------------------------------------------------------------

    def test_delete_ignores_absent_keys(self, backend: Backend, seeded: dict[str, bytes]) -> None:
        backend.delete(["packs/a0/a01234", MISSING, "blobs/3f/3fb0", "never/was"])
        assert not backend.exists("packs/a0/a01234")
        assert not backend.exists("blobs/3f/3fb0")
        assert backend.exists("packs/3f/3fa9e1")
        backend.delete([])
        backend.delete(iter(["packs/a0/a01234"]))  # again, and lazily

    def test_delete_many_keys(self, backend: Backend) -> None:
        keys = [f"packs/{i % 256:02x}/{i:06d}" for i in range(self.many_keys)]
        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(lambda k: backend.put_if_absent(k, k.encode()), keys))
        backend.put_if_absent("blobs/keep", b"keep")
        assert sum(1 for _ in backend.list("packs/")) == self.many_keys
        backend.delete(k for k in keys)  # a generator: backends must batch lazily
        assert list(backend.list("packs/")) == []
        assert backend.get("blobs/keep") == b"keep"

    # -- freshen, now ----------------------------------------------------------------------------

    def test_freshen_moves_mtime_forward(self, backend: Backend) -> None:
        backend.put_if_absent("packs/00/old", b"old pack")
        aged = self.age(backend, "packs/00/old", 3_600)
        before = backend.stat("packs/00/old").mtime
        if aged:
            assert before < backend.now() - 3_000
        else:
            time.sleep(self.freshen_wait)
        backend.freshen("packs/00/old")
        after = backend.stat("packs/00/old").mtime
        if aged:
            assert after > before + 3_000
        assert after > before
        assert after <= backend.now() + self.mtime_slack
        assert backend.get("packs/00/old") == b"old pack"

    def test_freshen_missing_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError) as info:
            backend.freshen(MISSING)
        assert isinstance(info.value, FileNotFoundError)

    def test_now_is_monotonic_enough(self, backend: Backend) -> None:
        backend.put_if_absent("x", b"x")
        assert backend.stat("x").mtime <= backend.now() + self.mtime_slack


class ReadOnlyConformance(ReadConformance):
    """Reads, plus: the backend says it is read-only and every write raises ReadOnlyError."""

    def test_capabilities_read_only(self, backend: Backend) -> None:
        caps = backend.capabilities
        assert not caps.writes and not caps.deletes and not caps.atomic_cas

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda b: b.put_if_absent("packs/00/x", b"x"), id="put_if_absent"),
            pytest.param(lambda b: b.put_cas("manifests/x.toml", b"x", expected=None), id="put_cas"),
            pytest.param(lambda b: b.put("manifests/x.toml", b"x"), id="put"),
            pytest.param(lambda b: b.delete(["packs/3f/3fa9e1"]), id="delete"),
            pytest.param(lambda b: b.freshen("packs/3f/3fa9e1"), id="freshen"),
        ],
    )
    def test_writes_raise_read_only(
        self, backend: Backend, seeded: dict[str, bytes], call: Callable[[Backend], Any]
    ) -> None:
        with pytest.raises(ReadOnlyError) as info:
            call(backend)
        assert isinstance(info.value, PermissionError)
        assert backend.url in str(info.value)
        assert "publish to the store's s3:// or local URL instead" in str(info.value)
        assert backend.get("packs/3f/3fa9e1") == PAYLOAD  # nothing changed
