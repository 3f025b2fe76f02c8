"""Per demo model and for the Autoware-shaped folders: publish with and without the ONNX check
(what reading the check and the ONNX metadata costs a publish), and `zoostore export` to a
plain mirror (SHA256SUMS and index) on a local directory.

    python bench/bench_export.py [--repeat 3] [--out docs/bench-export.md]

Models: the demo zoo (demo/make_models.py: generated MLP and convnet, SqueezeNet from the onnx
package, Silero VAD from its package when installed), plus one stand-in network for each real
Autoware definition.yaml in tests/data/autoware (ONNX ones: declared names, types and shapes,
made with onnx.helper). Each publish goes to a fresh local store, best of --repeat; export
writes a fresh mirror each run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))

import common as c  # noqa: E402


def demo_models(work: Path) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("make_models", REPO / "demo" / "make_models.py")
    assert spec and spec.loader
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    out = work / "models"
    with contextlib.redirect_stdout(sys.stderr):
        mm.main(["--out", str(out), "--skip-missing"])
    return {"/".join(p.parent.relative_to(out).parts): p.parent for p in sorted(out.rglob("*.onnx"))}


def autoware_models(work: Path) -> dict[str, Path]:
    import onnx
    from test_check import ONNX_DEFINITIONS, autoware_folder, stand_in

    out = {}
    for definition in ONNX_DEFINITIONS:
        folder, desc = autoware_folder(work / "autoware" / definition.parent.parent.name, definition)
        onnx.save(stand_in(desc), folder / desc.network)
        out[f"autoware/{folder.name}"] = folder
    return out


def best(repeat: int, fn: object) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=c.DOCS / "bench-export.md")
    args = ap.parse_args()

    import zoostore
    from zoostore.ops.export import export_store
    from zoostore.repository import init_store

    rows = []
    with tempfile.TemporaryDirectory(prefix="zoostore-bench-export-") as tmp:
        work = Path(tmp)
        models = {**demo_models(work), **autoware_models(work)}
        for i, (name, folder) in enumerate(sorted(models.items())):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            counter = iter(range(10**6))

            def publish(check: bool) -> None:
                zoo, _ = init_store(work / f"store-{i}-{next(counter)}")
                zoostore.publish(zoo, "m", "1.0.0", [folder], check=check)

            plain = best(args.repeat, lambda: publish(False))
            checked = best(args.repeat, lambda: publish(True))
            zoo, _ = init_store(work / f"store-{i}-export")
            zoostore.publish(zoo, "m", "1.0.0", [folder], check=False)
            export = best(args.repeat, lambda: export_store(zoo, str(work / f"mirror-{i}-{next(counter)}")))
            rows.append([name, c.human(size), c.ms(plain), c.ms(checked), c.ms(checked - plain), c.ms(export)])
            c.log(f"{name}: publish {plain:.3f} s, with check {checked:.3f} s, export {export:.3f} s")
    headers = ["model", "files", "publish --no-check ms", "publish with check ms", "check + metadata ms",
               "export ms"]
    table = c.table(headers, rows)
    print(table)
    c.write_markdown(args.out, "Benchmark: publish with the ONNX check, and export, per model", [
        f"`{c.command_line()}`",
        c.machine_markdown(),
        table,
        f"Best of {args.repeat}, in process, fresh local store per run. *check + metadata* is the "
        "difference: the ONNX check (checker, policy, nodes, one onnxruntime run, test data sets "
        "when present) whose report also becomes the version's `meta.onnx`; reading that metadata "
        "adds nothing on its own, the check parses the model anyway. *export* writes the plain "
        "mirror (files, SHA256SUMS per version, index.json) to a fresh local directory.",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
