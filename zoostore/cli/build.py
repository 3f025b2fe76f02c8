"""`zoostore build MODEL_DIR --target ARCH...`: compile a model with Apache TVM per arch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="compile a model's ONNX network with Apache TVM for x86_64 and aarch64",
        description="Compile the ONNX network of MODEL_DIR (the file its model.toml or Autoware "
        "definition.yaml names, e.g. model_files/rpn.onnx, or its only .onnx; never a Git LFS "
        "pointer: run 'git lfs pull' first) with Apache TVM: the Relax ONNX frontend with symbolic "
        "dimensions bound by model.toml's [dims] (else 1, also for a declared -1), tvm.compile for the arch's LLVM triple, export_library "
        "linked with g++ (x86_64) or Debian's aarch64-linux-gnu-g++. Each arch gets OUT/ARCH/ "
        "with deploy_lib.so, deploy_io.json (entry, input and output names, shapes, dtypes), "
        "build.toml (TVM version, target, compiler, options) that publish turns into "
        "requires.tvm, and NAME_config.hpp, C++ constants in the spirit of Autoware's "
        "inference_engine_tvm_config.hpp (name, version, TVM version, target, nodes) with a "
        "header-only version check. Building twice gives identical bytes.",
        epilog="Needs the tvm extra: pip install 'zoostore[tvm]'; for aarch64: "
        "apt-get install g++-aarch64-linux-gnu. See docs/pipeline.md.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="model directory (with model.toml or definition.yaml) or an .onnx file")
    p.add_argument("--target", "-t", dest="targets", action="extend", nargs="+", required=True,
                   metavar="ARCH", help="architecture to build for: x86_64, aarch64 (repeatable)")
    p.add_argument("--out", "-o", type=Path, default=None, metavar="DIR",
                   help="output directory, one subdirectory per arch (default: MODEL_DIR/build)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="model name for build.toml and the C++ header (default: the folder's name; "
                   "for a definition.yaml folder, the network folder above it, as Autoware names it)")
    p.add_argument("--model-version", default=None, metavar="X.Y.Z",
                   help="the zoo version this build will be published as, written into build.toml "
                   "and the C++ header's modelzoo_version")
    add_json(p, "the results")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing on success (no progress, no summary); errors still go to stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.cli._ui import TerminalProgress, human_bytes
    from zoostore.integrations.tvm_build import build_model

    progress = TerminalProgress.for_args(args)
    results = build_model(args.model, targets=args.targets, out=args.out, name=args.name,
                          version=args.model_version, progress=progress)
    if args.json:
        doc = {"builds": [
            {
                "arch": r.arch,
                "dir": str(r.out_dir),
                "files": {f.name: f.stat().st_size for f in r.files},
                "requires": r.record.requires,
                "steps": {s.step: round(s.seconds, 4) for s in r.steps},
                # what each step found worth saying: the test data's result, or why it was not run
                "details": {s.step: s.detail for s in r.steps if s.detail},
            }
            for r in results
        ]}
        print_json(doc)
        return 0
    if args.quiet:
        return 0
    for r in results:
        size = r.library.stat().st_size
        steps = ", ".join(f"{s.step.split()[0]} {s.seconds:.2f} s" for s in r.steps)
        print(f"{r.arch:<8} {r.library}  {human_bytes(size)}  ({steps})")
        for s in r.steps:  # what the test data gave, or why it was not run (aarch64 without qemu...)
            if s.step.startswith("test data") and s.detail:
                print(f"         {s.detail}")
    if results:
        req = results[0].record.requires
        print(f"requires: {', '.join(f'{k} {v}' for k, v in req.items())}  (TVM {results[0].record.tvm_version})")
    return 0
