"""A state machine that interleaves publishers, tag moves, gc and sync on one local store, with
the clock moved by `os.utime` (ageing every object is the same as time passing).

Publishes run the real phases of `zoostore.ops.publish`, one rule each, so gc can run between
them: begin (`plan_publish`: hash, read the manifest, index the chunks of recent versions for
dedup), upload (`PublishPlan.upload`: packs, then recipes through the blob writer, which
freshens reused old objects and re-checks them), commit (`PublishPlan.commit`: compare-and-swap
the manifest; its last existence check may be taken early, as its own rule, so that gc can
delete between that check and the compare-and-swap). A publish may also be abandoned (a crash),
crash after storing its packs and be retried later (the retry stores byte-identical packs and
finds them there), or fail because gc deleted something it reused; it then publishes nothing.
gc is planned and executed as two steps, with other steps in between, as when a user reads the
plan at the prompt.

Safety claim under test (docs/gc.md): while every publish finishes within half the grace period
G and gc runs with the store's G, every version a manifest lists can be fetched and verified,
no committed version is lost, and gc drops only versions no keep rule, tag or `latest` retains.
With `--grace 0` the claim needs "nobody is publishing or reading", so that gc only runs when
no publish is in flight, and long-lived readers drop their cached recipes first.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as _hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from test_gc import age_store, assert_all_readable, content, make_zoo, mutate, write_files
from zoostore.core import semver
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import ConflictError
from zoostore.ops.gc import GcPlan, plan_gc
from zoostore.ops.publish import PublishPlan, plan_publish, publish
from zoostore.repository import open_store
from zoostore.repository import Store
from zoostore.storage.recipe import blob_key

def event(text: str) -> None:
    """Hypothesis statistics; a no-op when the machine is driven by hand (regression tests)."""
    try:
        _hypothesis_event(text)
    except Exception:
        pass


# The store's grace period, in (virtual) seconds. Real time runs on top of the virtual clock
# (store mtimes age with it); 600 s keeps tens of seconds of a loaded CI machine small beside G.
G = 600.0
MODELS = ("a", "b")


@dataclass
class Pending:
    plan: PublishPlan  # from plan_publish; its `started` is the publish's first reuse decision
    aged: float = 0.0  # virtual seconds the clock was moved on since begin
    uploaded: bool = False

    @property
    def model(self) -> str:
        return self.plan.model

    @property
    def version(self) -> str:
        return self.plan.version

    def elapsed(self) -> float:
        return self.aged + (time.monotonic() - self.plan.started)


class GcMachine(RuleBasedStateMachine):
    pending = Bundle("pending")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="gc-sm-"))
        # Packs of a few chunks: dropping a version leaves whole packs dead more often.
        self.zoo: Store = make_zoo(self.tmp / "store", grace=G, pack_size=4096, settle=0.01)
        self.bases = [content(1000 + i, n=12_000) for i in range(2)]
        self.contents: dict[str, list[bytes]] = {m: [] for m in MODELS}  # files ever written
        self.expected: dict[str, dict[str, dict[str, Digest]]] = {m: {} for m in MODELS}
        self.tags: dict[str, str] = {}
        self.counter = 0
        self.inflight: list[Pending] = []
        self.crashed: list[tuple[str, dict[str, Path]]] = []  # publishes that crashed after their packs
        self.plan: GcPlan | None = None
        self.plan_keep: list[str] = []
        # A long-lived reader, as a service holding a Store open: its cached recipes may predate
        # a repack. BlobStore expires cached recipes after G/2 of monotonic time; the machine
        # moves a virtual clock, so it expires them itself (`cache_age`).
        self.reader = open_store(self.zoo.url)
        self.cache_age = 0.0

    # -- helpers
    def _content(self, model: str, how: int, seed: int) -> bytes:
        """0: a new variant of a shared base; 1: an earlier file again (any model); 2: a variant
        of an earlier file of this model (shares its unique chunks: dedup against old versions)."""
        own = self.contents[model]
        if how == 1 and (own or self.contents[MODELS[seed % 2]]):
            pool = own or self.contents[MODELS[seed % 2]]
            return pool[seed % len(pool)]
        if how == 2 and own:
            return mutate(own[seed % len(own)], seed, size=1_500)
        return mutate(self.bases[seed % 2], seed, size=3_000)

    def _new_version(self) -> str:
        self.counter += 1
        return f"1.{self.counter}.0"

    def _write(self, model: str, version: str, how: int, seed: int, two_files: bool) -> dict[str, Path]:
        files = {"w.bin": self._content(model, how, seed)}
        if two_files:
            files["x.bin"] = self._content(model, 0, seed + 7)
        d = write_files(self.tmp / "src" / f"{model}-{version}", files)
        self.contents[model].extend(files.values())
        return {name: d / name for name in files}

    @initialize(seeds=st.lists(st.integers(0, 10_000), min_size=2, max_size=5))
    def history(self, seeds: list[int]) -> None:
        """Some versions of each model, older than G: material to deduplicate against and drop."""
        for i, seed in enumerate(seeds):
            self.publish_whole(MODELS[i % 2], 0 if i < 2 else 2, seed)
        age_store(self.zoo, 2 * G)

    # -- publishing, in phases
    @rule(target=pending, model=st.sampled_from(MODELS), how=st.sampled_from([0, 1, 2, 2]), seed=st.integers(0, 10_000),
          two=st.booleans())
    def begin_publish(self, model: str, how: int, seed: int, two: bool) -> Pending:
        version = self._new_version()
        files = self._write(model, version, how, seed, two)
        p = Pending(plan_publish(self.zoo, model, version, [files[n] for n in sorted(files)]))
        self.inflight.append(p)
        return p

    @rule(p=pending)
    def upload(self, p: Pending) -> None:
        if p.uploaded or p not in self.inflight:
            return
        try:
            results = p.plan.upload()
        except ConflictError:
            event("upload failed: gc deleted a reused object")
            self.inflight.remove(p)
            return
        for name, r in zip(sorted(p.plan.files), results, strict=True):
            assert r.blob == hash_file(p.plan.files[name]) == p.plan.entries[name].blob
        p.uploaded = True

    @rule(p=pending)
    def confirm(self, p: Pending) -> None:
        """The commit's last check that every object the version names is stored, taken early:
        gc may delete between it and the compare-and-swap, and the freshen rule alone must
        make that safe (docs/gc.md)."""
        if not p.uploaded or p not in self.inflight:
            return
        try:
            p.plan._confirm_stored()
        except ConflictError:
            self.inflight.remove(p)
            return
        p.plan._confirm_stored = lambda: None  # type: ignore[method-assign]

    @rule(p=consumes(pending))
    def commit(self, p: Pending) -> None:
        if not p.uploaded or p not in self.inflight:
            if p in self.inflight and not p.uploaded:
                self.inflight.remove(p)  # abandoned before uploading: nothing to commit
            return
        self.inflight.remove(p)
        if p.elapsed() >= G / 2:
            event("publish too slow: abandoned")  # outside the claim (real time ran on)
            return
        result = p.plan.commit()
        self.expected[p.model][p.version] = {n: e.blob for n, e in result.files.items()}

    @rule(p=consumes(pending))
    def abandon(self, p: Pending) -> None:
        if p in self.inflight:
            self.inflight.remove(p)  # a crash: packs (and maybe recipes) stay as garbage

    @rule(p=consumes(pending))
    def crash_after_packs(self, p: Pending) -> None:
        """A crash after the packs were stored and before the recipes: its retry (`retry`)
        writes byte-identical packs and finds these there."""
        if p not in self.inflight or p.uploaded:
            return
        self.inflight.remove(p)
        try:
            results = p.plan.upload()
        except ConflictError:
            return
        self.zoo.backend.delete([blob_key(r.blob) for r in results if r.new])
        self.zoo.blobs.forget(None)
        self.crashed.append((p.model, dict(p.plan.files)))

    @rule(target=pending, pick=st.integers(0, 1000))
    def retry(self, pick: int) -> Pending:
        if not self.crashed:
            return multiple()
        model, files = self.crashed[pick % len(self.crashed)]
        p = Pending(plan_publish(self.zoo, model, self._new_version(), [files[n] for n in sorted(files)]))
        self.inflight.append(p)
        return p

    @rule(model=st.sampled_from(MODELS), how=st.integers(0, 2), seed=st.integers(0, 10_000))
    def publish_whole(self, model: str, how: int, seed: int) -> None:
        version = self._new_version()
        files = self._write(model, version, how, seed, False)
        try:
            publish(self.zoo, model, version, [files["w.bin"]], check=False)
        except ConflictError:
            event("publish failed: gc deleted a reused object")
            return
        self.expected[model][version] = {"w.bin": hash_file(files["w.bin"])}

    # -- tags
    @rule(model=st.sampled_from(MODELS), pick=st.integers(0, 1000), delete=st.booleans())
    def move_tag(self, model: str, pick: int, delete: bool) -> None:
        versions = sorted(self.expected[model], key=semver.parse_version)
        if not versions:
            return
        target = None if delete else versions[pick % len(versions)]
        self.zoo.update_manifest(model, lambda m: m.with_tag("stable", target) if m else None)
        if target is None:
            self.tags.pop(model, None)
        else:
            self.tags[model] = target

    # -- time
    @rule(delta=st.sampled_from([G * f for f in (1 / 60, 1 / 12, 1 / 6, 1 / 3, 0.75, 1.25, 3.0)]))
    def time_passes(self, delta: float) -> None:
        # Publishes in flight must finish within G/2: that is the claim's premise.
        if self.inflight:
            delta = min(delta, G / 2 - 1.0 - max(p.elapsed() for p in self.inflight))
        if delta <= 0:
            return
        age_store(self.zoo, delta)
        self.cache_age += delta
        if self.cache_age > G / 2:
            self.reader.blobs.forget()
            self.zoo.blobs.forget()
            self.cache_age = 0.0
        for p in self.inflight:
            p.aged += delta
        if self.plan is not None:  # a plan made earlier refers to an earlier clock
            self.plan.now -= delta
            self.plan.cutoff -= delta

    # -- gc
    @rule(model=st.sampled_from(MODELS), pick=st.integers(0, 1000),
          mode=st.sampled_from(["sweep", "from", "exact", "newest"]),
          repack=st.booleans(), zero_grace=st.booleans(), defer=st.booleans())
    def gc(self, model: str, pick: int, mode: str, repack: bool, zero_grace: bool, defer: bool) -> None:
        """Execute the pending plan if there is one; else plan, and execute now or later."""
        if self.plan is not None:
            self._execute()
            return
        versions = sorted(self.expected[model], key=semver.parse_version)
        keep: list[str] = []
        if mode != "sweep" and versions:
            v = versions[-1] if mode == "newest" else versions[pick % len(versions)]
            keep = [f"{model}@>={v}" if mode == "from" else f"{model}@{v}"]
        # --grace shorter than the store's is only safe when nobody publishes, nor reads with
        # recipes fetched before a repack: the operator has stopped publishers and readers.
        grace = 0.0 if zero_grace and not self.inflight else None
        if grace is not None:
            self.reader.blobs.forget()
            self.zoo.blobs.forget()
        self.plan = plan_gc(self.zoo, keep=keep, grace=grace, repack=repack, repack_threshold=0.9)
        self.plan_keep = keep
        if not defer or grace is not None:
            self._execute()

    def _execute(self) -> None:
        plan, self.plan = self.plan, None
        assert plan is not None
        if plan.grace < G and self.inflight:
            return  # a short grace is unsafe with publishes in flight: the user would not run it
        result = plan.execute()
        event(f"gc dropped versions: {bool(result.dropped)}")
        event(f"gc deleted recipes: {result.recipes_deleted > 0}, packs: {result.packs_deleted > 0}")
        event(f"gc repacked: {result.packs_repacked > 0}")
        event(f"gc kept objects changed since the plan: {result.kept_changed > 0}")
        for d in result.dropped:
            retained_by_rule = any(semver.satisfies(d.version, k.split("@", 1)[1]) for k in self.plan_keep
                                   if k.split("@", 1)[0] == d.model)
            assert not retained_by_rule, f"gc dropped {d} although --keep {self.plan_keep} retains it"
            assert self.tags.get(d.model) != d.version, f"gc dropped tagged {d}"
            assert d.version != max(self.expected[d.model], key=semver.parse_version), f"gc dropped latest {d}"
            del self.expected[d.model][d.version]

    # -- reading
    @rule()
    def sync(self) -> None:
        assert_all_readable(self.zoo.url, self.tmp)
        out = self.tmp / "reader"
        for model in self.reader.models():
            for version, release in self.reader.manifest(model).versions.items():
                for arch, path, entry in release.blobs():
                    self.reader.blobs.get_file(entry.blob, out / model / version / arch / path)

    @invariant()
    def manifests_list_exactly_the_committed_versions(self) -> None:
        zoo = open_store(self.zoo.url)
        for model in MODELS:
            try:
                listed = set(zoo.manifest(model).versions)
            except FileNotFoundError:
                listed = set()
            assert listed == set(self.expected[model]), f"{model}: listed {listed}, expected {set(self.expected[model])}"

    def teardown(self) -> None:
        try:
            if self.plan is not None:
                self._execute()
            # Let everything in flight finish or fail, then a final gc and a full read.
            for p in list(self.inflight):
                self.upload(p)
                self.commit(p)
            assert_all_readable(self.zoo.url, self.tmp)
            zoo = open_store(self.zoo.url)
            for model, versions in self.expected.items():
                for version, files in versions.items():
                    release = zoo.manifest(model).versions[version]
                    assert {p: e.blob for _, p, e in release.blobs()} == files
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


GcMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_gc_state_machine = GcMachine.TestCase



def test_reader_holding_recipes_across_a_repack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression sequence (found by the machine against a gc that did not freshen repacked
    packs): a long-lived reader caches recipes, gc drops versions and repacks, the next gc runs
    at once, and the reader reads again with the recipes it holds."""
    machine = GcMachine()
    machine.history(seeds=[1, 2, 3, 4, 5])
    machine.sync()
    machine.gc(model="a", pick=0, mode="newest", repack=True, zero_grace=False, defer=False)
    machine.gc(model="a", pick=0, mode="sweep", repack=False, zero_grace=False, defer=False)
    machine.sync()
    machine.teardown()


def test_publish_racing_a_release_cleanup() -> None:
    """Regression sequence: a publish indexes chunks of old versions, gc drops those versions
    and deletes their packs, then the publish uploads: it must not dangle. It used to fail
    cleanly ("publish again"); now it stores those chunks anew, and the version it commits
    reads back (teardown reads every listed version)."""
    machine = GcMachine()
    for seed in (1, 2, 3):
        machine.publish_whole("a", 0, seed)
    machine.time_passes(2 * G)
    pending = cast(Pending, machine.begin_publish(model="a", how=2, seed=1, two=False))
    machine.gc(model="a", pick=0, mode="newest", repack=False, zero_grace=False, defer=False)
    machine.upload(pending)
    assert pending in machine.inflight and pending.uploaded
    machine.commit(pending)
    assert pending.version in machine.expected["a"]
    machine.sync()
    machine.teardown()


def test_reader_holding_a_recipe_of_a_blob_gc_deleted_and_a_publish_brought_back() -> None:
    """Regression sequence (found by the machine): a long-lived reader caches a file's recipe,
    gc drops that version and deletes the recipe and its packs, the same file is published
    again (a new recipe naming new packs), and the reader reads the new version: it must read
    the new recipe instead of failing on the packs its cached copy names."""
    machine = GcMachine()
    machine.history(seeds=[0, 0, 1, 0, 0])
    machine.sync()
    machine.gc(defer=False, mode="from", model="a", pick=116, repack=False, zero_grace=False)
    machine.sync()
    machine.publish_whole(how=1, model="a", seed=1)
    machine.sync()
    machine.teardown()


def test_retry_of_a_publish_that_crashed_after_its_packs_races_a_deferred_gc() -> None:
    """Regression sequence: a publish crashes after storing its packs; more than G later gc
    plans (the orphan packs are candidates), the retry stores byte-identical packs and checks
    them, and only then does gc execute on the plan's listings, before the retry's CAS."""
    machine = GcMachine()
    machine.history(seeds=[1, 2])
    crashed = cast(Pending, machine.begin_publish(model="a", how=0, seed=5, two=False))
    machine.crash_after_packs(crashed)
    machine.time_passes(3 * G)
    machine.gc(model="a", pick=0, mode="sweep", repack=False, zero_grace=False, defer=True)
    retry = cast(Pending, machine.retry(pick=0))
    machine.upload(retry)
    machine.confirm(retry)
    machine.gc(model="a", pick=0, mode="sweep", repack=False, zero_grace=False, defer=False)  # executes
    machine.commit(retry)
    machine.sync()
    machine.teardown()
