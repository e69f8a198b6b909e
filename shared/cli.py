"""The ``zts`` command: wires the services to local inputs (files, Azurite) or to Azure.

Exit codes: 0 success, 1 the command ran but found errors (or, with ``--strict``, skipped input),
2 invalid input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from shared.adapters.snapshot_file import read_snapshot
from shared.domain.inventory import Inventory
from shared.domain.normalize import SnapshotError, normalize
from shared.render.text import counts_table, load_problems

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


def inventory_json(inventory: Inventory) -> dict[str, object]:
    report = inventory.report
    return {
        "counts": inventory.counts(),
        "skipped": [s.as_dict() for s in report.skipped],
        "unknown_types": dict(report.unknown_types),
        "dangling": [
            {"id": d.resource_id, "field": d.field, "target": d.target_id}
            for d in report.dangling
        ],
        "duplicates": report.duplicates,
        "rows": report.total_rows,
    }


def cmd_inventory(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        inventory = normalize(read_snapshot(args.snapshot))
    except SnapshotError as error:
        print(f"zts: {error}", file=err)
        return EXIT_INVALID
    if args.json:
        json.dump(inventory_json(inventory), out, indent=2)
        out.write("\n")
    else:
        print(counts_table(inventory.counts()), file=out)
        problems = load_problems(inventory.report)
        if problems:
            print("\n" + problems, file=err)
    if args.strict and inventory.report.skipped:
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.services.demo import run_demo

    return run_demo(out=out, err=err, keep_dir=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zts", description="Zero Trust segmentation for Azure.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inv = commands.add_parser(
        "inventory", help="load a snapshot of raw ARM resources and count what it holds",
        description="Read a JSON array of ARM resources, or {\"data\": [...]} as `az graph "
                    "query` prints it, and report the assets per kind and any malformed rows.",
    )
    inv.add_argument("--snapshot", type=Path, required=True, help="snapshot file (JSON)")
    inv.add_argument("--json", action="store_true", help="machine-readable output")
    inv.add_argument("--strict", action="store_true",
                     help="exit 1 when any resource was skipped as malformed")
    inv.set_defaults(handler=cmd_inventory)

    demo = commands.add_parser(
        "demo", help="run the pipeline on the embedded sample estate with a local Azurite",
    )
    demo.add_argument("--out", type=Path, default=None,
                      help="also write the sample snapshot and flow logs to this folder")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_INVALID
    code: int = args.handler(args, out, err)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
