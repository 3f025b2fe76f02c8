"""bench/report.py and bench/wheels.py: the pure parts (no benchmark is run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import common  # noqa: E402
import report  # noqa: E402
import wheels  # noqa: E402


def rec(metric: str, tool: str, values: list[float], unit: str, **kw: object) -> dict[str, object]:
    return common.record(metric, tool, values, unit=unit, **kw)  # type: ignore[arg-type]


def test_stable_names_drop_build_hashes_and_library_versions() -> None:
    assert wheels.stable_name("numpy.libs/libscipy_openblas64_-fdde5778.so") == "numpy.libs__libscipy_openblas64_.so"
    assert wheels.stable_name("onnxruntime/capi/libonnxruntime.so.1.30.0") == "onnxruntime__capi__libonnxruntime.so"
    assert wheels.stable_name("numpy.libs/libgfortran-040039e1-0352e75f.so.5.0.0") == "numpy.libs__libgfortran.so"


def test_tables_show_median_min_max_and_escape_pipes() -> None:
    text = report.tables_markdown([rec("ingest_s", "tar | zstd -1 -T0", [0.3, 0.1, 0.2], "s")])
    assert "tar \\| zstd -1 -T0" in text
    assert "200 ms [100 ms–300 ms]" in text


def test_targets_are_ratios_of_medians_from_the_same_run() -> None:
    data = {"release": {"records": [
        rec("stored_first", "zoostore", [90], "B"), rec("stored_first", "restic", [100], "B"),
        rec("ingest_mbps", "zoostore publish", [100, 50, 60], "MB/s"),
        rec("ingest_mbps", "tar | zstd -1 -T0", [200, 100, 300], "MB/s"),
    ]}, "sync": {"records": [
        rec("small_cold_s", "zoostore sync", [2.0], "s", x=2000), rec("small_cold_s", "rsync -a", [0.5], "s", x=2000),
    ]}}
    got = {name: (value, ok) for name, value, _, ok in report.targets(data)}
    assert got["stored bytes, release 1 ≤ restic's repository"] == ("0.90×", True)
    assert got["publish ≥ 0.9× `tar | zstd -1 -T0`"] == ("0.30×", False)  # 60 / 200
    assert got["cold sync of 2,000 small files ≤ 3× `rsync -a`"] == ("4.00×", False)
    assert not any("gc" in name for name in got)  # nothing measured, nothing claimed


def test_report_writes_markdown_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "bench-data"
    monkeypatch.setattr(common, "DATA", data)
    monkeypatch.setattr(report, "IMG", tmp_path / "img")
    common.write_data("release", [rec("first_sync_s", "zoostore sync", [1.0, 1.2], "s"),
                                  rec("first_sync_s", "rsync -a", [0.5, 0.6], "s")],
                      tools={"rsync": "3"}, inputs=[], release_bytes=[1, 1], release_files=[1, 1])
    out = report.write(tmp_path / "benchmarks.md")
    text = out.read_text()
    assert "## Where zoostore is behind" in text and "first sync ≤ 1.0× `rsync -a`" in text
    if report._plt() is not None:
        assert (tmp_path / "img" / "first-sync.png").stat().st_size > 0
        assert "img/first-sync.png" in text


def test_the_report_names_the_machines_the_results_ran_on_not_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    def machine(cpu: str) -> dict[str, str]:
        return {"cpu": cpu, "memory": "24 GiB RAM", "os": "Linux 6", "python": "3.11.7", "libraries": "blake3 1",
                "load": "1.0, 1.0, 1.0"}

    monkeypatch.setattr(common, "machine", lambda: machine("the machine writing the report"))
    one = {"release": {"command": "python bench/bench_release.py", "started": "t1", "machine": machine("Intel Xeon")},
           "sync": {"command": "python bench/bench_sync.py", "started": "t2", "machine": machine("Intel Xeon")}}
    text = report.machine_markdown(one) + report.runs_markdown(one)
    assert "Machine: Intel Xeon, 24 GiB RAM" in text and "writing the report" not in text
    two = {**one, "gc": {"command": "python bench/bench_gc.py", "started": "t3", "machine": machine("AMD EPYC")}}
    assert "2 different machines" in report.machine_markdown(two)
    runs = report.runs_markdown(two).splitlines()
    assert "AMD EPYC" in runs[2] and "Intel Xeon" in runs[0]


def test_the_two_time_targets_come_from_the_alternating_pairs_when_the_run_has_them() -> None:
    blocks = [rec("ingest_mbps", "zoostore publish", [60], "MB/s"), rec("ingest_mbps", "tar | zstd -1 -T0", [200], "MB/s"),
              rec("first_sync_s", "zoostore sync", [2.0], "s"), rec("first_sync_s", "rsync -a", [1.0], "s")]
    pairs = [rec("ingest_paired_mbps", "zoostore publish", [90, 95, 80], "MB/s"),
             rec("ingest_paired_mbps", "tar | zstd -1 -T0", [100, 99, 101], "MB/s"),
             rec("first_sync_paired_s", "zoostore sync", [1.1], "s"), rec("first_sync_paired_s", "rsync -a", [1.0], "s")]
    only_blocks = {name: (v, what) for name, v, what, _ in report.targets({"release": {"records": blocks}})}
    assert only_blocks["publish ≥ 0.9× `tar | zstd -1 -T0`"] == ("0.30×", "MB/s ratio")
    both = {name: (v, what) for name, v, what, _ in report.targets({"release": {"records": blocks + pairs}})}
    # the value is the ratio of the medians; the per-round ratios (90/100, 95/99, 80/101) beside
    # it, and the runs in a row where they disagree about the line (0.30×: not settled, below)
    assert both["publish ≥ 0.9× `tar | zstd -1 -T0`"] == (
        "0.90×", "MB/s ratio, runs alternating with the peer (per round: 0.90× [0.79–0.96]; runs in a row: 0.30×)")
    assert both["first sync ≤ 1.0× `rsync -a`"] == (
        "1.10×", "time ratio, runs alternating with the peer (per round: 1.10× [1.10–1.10])")
    # a run that recorded CPU time says how much CPU each side used, beside the wall-time verdict
    cpu = [rec("first_sync_paired_cpu_s", "zoostore sync", [0.7, 0.6, 0.8], "s"),
           rec("first_sync_paired_cpu_s", "rsync -a", [0.4, 0.4, 0.35], "s")]
    with_cpu = {name: what for name, _, what, _ in report.targets({"release": {"records": blocks + pairs + cpu}})}
    assert with_cpu["first sync ≤ 1.0× `rsync -a`"].endswith("(per round: 1.10× [1.10–1.10]; CPU 1.75× the peer's)")
    assert with_cpu["publish ≥ 0.9× `tar | zstd -1 -T0`"].endswith("[0.79–0.96]; runs in a row: 0.30×)")   # no CPU for it


def test_a_time_target_whose_estimates_disagree_about_the_line_is_not_settled(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def data(zoo_pairs: list[float], zoo_block: list[float], rsync_pairs: tuple[float, ...] = (1.0, 2.0, 1.0)
             ) -> dict[str, dict[str, object]]:
        return {"release": {"records": [
            rec("first_sync_s", "zoostore sync", zoo_block, "s"), rec("first_sync_s", "rsync -a", [1.0, 1.0, 1.0], "s"),
            rec("first_sync_paired_s", "zoostore sync", zoo_pairs, "s"),
            rec("first_sync_paired_s", "rsync -a", list(rsync_pairs), "s")]}}

    def verdict(d: dict[str, dict[str, object]]) -> bool | None:
        return {name: ok for name, _, _, ok in report.targets(d)}["first sync ≤ 1.0× `rsync -a`"]

    assert verdict(data([0.9, 1.8, 0.8], [0.9, 0.9, 0.9])) is True     # 0.90×, per round 0.90×, in a row 0.90×
    assert verdict(data([1.2, 2.4, 1.3], [1.2, 1.3, 1.1])) is False    # all three over the line
    # The ratio of medians says met (1.9 / 2.0), the rounds say behind (1.2, 1.1, 0.95 per round):
    # the kind of run where the peer's slow rounds move its median, not a verdict.
    assert verdict(data([0.6, 2.2, 1.9], [0.9, 0.9, 0.9], (0.5, 2.0, 2.0))) is None
    assert verdict(data([1.1, 2.2, 1.2], [0.9, 0.9, 0.9])) is None   # all the rounds behind, the runs in a row not
    assert report.settled(1.0, True, 0.8, float("nan")) is True      # an estimate the run lacks is left out
    monkeypatch.setattr(common, "DATA", tmp_path / "bench-data")
    monkeypatch.setattr(report, "IMG", tmp_path / "img")
    common.write_data("release", data([1.1, 2.2, 1.2], [0.9, 0.9, 0.9])["release"]["records"],  # type: ignore[arg-type]
                      tools={}, inputs=[], release_bytes=[1, 1], release_files=[1, 1])
    text = report.write(tmp_path / "benchmarks.md").read_text()
    assert "| **not settled** |" in text and "not settled: the estimates of this run fall on both sides" in text
