"""`zoostore verify STORE`: check manifests, recipes and packs; optionally re-hash every chunk."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="check the store for missing or corrupt objects",
        description="Check that every manifest file has a recipe, every recipe's packs and frames "
        "exist and sizes agree; with --read-data, download every pack and re-hash every chunk. "
        "Reports every problem found (not just the first) and exits 4 if there is any.",
    )
    p.add_argument("store", metavar="STORE")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--read-data", action="store_true", help="download all packs and re-hash every chunk")
    g.add_argument("--read-data-subset", metavar="N/M",
                   help="read only the N-th of M slices of the packs (run N=1..M over M days to cover all)")
    p.add_argument("--repair", action="store_true",
                   help="rebuild missing or damaged recipes from pack footers; says what it could not")
    add_json(p, "the report")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.core.errors import UsageError
    from zoostore.repository import open_store
    from zoostore.ops.verify import verify_store

    subset = None
    if args.read_data_subset:
        try:
            n_s, m_s = args.read_data_subset.split("/")
            subset = (int(n_s), int(m_s))
            if not 1 <= subset[0] <= subset[1]:
                raise ValueError
        except ValueError:
            raise UsageError(f"invalid --read-data-subset {args.read_data_subset!r}: expected N/M with 1 <= N <= M, e.g. 1/7") from None
    store = open_store(args.store)
    report = verify_store(store, read_data=args.read_data, subset=subset, repair=args.repair,
                          progress=TerminalProgress.for_args(args))
    if args.json:
        print_json({
            "ok": report.ok, "recipes": report.recipes, "packs": report.packs,
            "packs_read": report.packs_read, "chunks_read": report.chunks_read,
            "problems": [{"kind": p.kind, "object": p.obj, "message": p.message} for p in report.problems],
            "repaired": report.repaired, "unrepaired": report.unrepaired, "leftovers": report.leftovers,
        })
    else:
        for p in report.problems:
            print(f"problem: {p}")
        for r in report.repaired:
            print(f"repaired: {r}")
        for r in report.unrepaired:
            print(f"not repaired: {r}")
        for r in report.leftovers:
            print(f"leftover of a killed writer (zoostore gc deletes it): {r}")
        read = f", read {report.packs_read} packs ({human_bytes(report.bytes_read)}), {report.chunks_read} chunks re-hashed" if report.packs_read else ""
        status = "no problems" if not report.problems else f"{len(report.problems)} problem(s)"
        print(f"checked {report.recipes} recipes, {report.packs} packs{read}: {status}", file=sys.stderr)
    if report.problems and not (args.repair and report.ok):
        return 4
    return 0
