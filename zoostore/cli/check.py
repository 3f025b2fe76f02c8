"""`zoostore check PATH...`: ONNX compliance and a smoke run, one report per file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="check ONNX models: checker, opset policy, declared nodes, onnxruntime smoke run",
        description="Check ONNX files before publishing them, as the ONNX Model Store's CI does: "
        "the onnx checker with full_check (graph, types, shape inference, external data), the IR "
        "version and opset against a policy, the graph's inputs and outputs against the "
        "descriptor that names the file (model.toml next to it, or Autoware's definition.yaml "
        "above model_files/), and one onnxruntime run on generated inputs (floats from a seeded "
        "RNG, integers zero; symbolic dimensions from model.toml's [dims], else 1, and 1 for a "
        "declared -1). A Git LFS pointer fails with the hint to run 'git lfs pull'. "
        "Exit status 0 when every file passes, 10 when any fails.",
        epilog="Needs the onnx extra: pip install 'zoostore[onnx]'. "
        "See docs/pipeline.md for model.toml, docs/autoware.md for definition.yaml.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="an ONNX file; a model folder (the network its model.toml or "
                   "definition.yaml names); or a directory searched recursively for *.onnx")
    p.add_argument("--min-opset", type=int, default=None, metavar="N",
                   help="lowest default-domain opset accepted (default: 7, the oldest onnxruntime supports)")
    p.add_argument("--max-opset", type=int, default=None, metavar="N",
                   help="highest opset accepted (default: the newest the installed onnx knows)")
    add_json(p, "the reports")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failing files and the summary")
    p.set_defaults(func=run)


def format_report(report: Any, *, quiet: bool = False) -> list[str]:
    """The text form of one CheckReport."""
    status = "ok  " if report.ok else "FAIL"
    opset = report.opsets.get("ai.onnx", "?")
    head = f"{status} {report.path}  (IR {report.ir_version if report.ir_version is not None else '?'}, opset {opset}, {report.seconds:.2f} s)"
    if quiet and report.ok:
        return []
    lines = [head]
    if not quiet:
        for s in report.steps:
            mark = " " if s.ok else "!"
            lines.append(f"   {mark} {s.step:<8} {s.seconds * 1000:8.1f} ms  {s.detail}".rstrip())
    # A problem may span lines (a descriptor's list): they stay indented under it.
    lines += ["     problem: " + p.replace("\n", "\n" + " " * 14) for p in report.problems]
    lines += ["     warning: " + w.replace("\n", "\n" + " " * 14) for w in report.warnings]
    return lines


def run(args: argparse.Namespace) -> int:
    from zoostore.cli._ui import TerminalProgress
    from zoostore.core.errors import CheckFailedError
    from zoostore.integrations.onnx_check import DEFAULT_MIN_OPSET, OpsetPolicy, check_model, find_onnx_files

    policy = OpsetPolicy(
        min_opset=args.min_opset if args.min_opset is not None else DEFAULT_MIN_OPSET,
        max_opset=args.max_opset,
    )
    files = find_onnx_files(args.paths)
    progress = TerminalProgress.for_args(args)
    reports = []
    for path in files:
        report = check_model(path, policy=policy, progress=progress)
        reports.append(report)
        if not args.json:
            for line in format_report(report, quiet=args.quiet):
                print(line)
            sys.stdout.flush()
    failed = [r for r in reports if not r.ok]
    if args.json:
        print_json({"ok": not failed, "files": [r.to_dict() for r in reports]})
        print()
    else:
        total = sum(r.seconds for r in reports)
        print(f"{len(reports) - len(failed)} passed, {len(failed)} failed ({total:.2f} s)")
    if failed:
        raise CheckFailedError(
            f"{len(failed)} of {len(reports)} ONNX file(s) failed the check: "
            + ", ".join(str(r.path) for r in failed)
        )
    return 0
