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
from shared.cli_alerts import add_alert_commands
from shared.cli_analytics import add_analytics_commands
from shared.cli_azure import add_azure_commands
from shared.cli_report import add_report_commands
from shared.domain.inventory import Inventory
from shared.domain.normalize import SnapshotError, normalize
from shared.policy.model import Policy
from shared.render.text import counts_table, load_problems, table

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


def _load_inputs(args: argparse.Namespace, err: TextIO) -> tuple[Policy, Inventory] | None:
    """Policy and inventory for `groups`/`plan`; prints every problem and returns None when
    either input is unusable."""
    from shared.policy.loader import load_policy_file

    loaded = load_policy_file(args.policy)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=err)
    for error in loaded.errors:
        print(f"error: {error}", file=err)
    try:
        inventory = normalize(read_snapshot(args.snapshot))
    except SnapshotError as error:
        print(f"zts: {error}", file=err)
        return None
    problems = load_problems(inventory.report)
    if problems:
        print(problems, file=err)
    if loaded.policy is None:
        return None
    return loaded.policy, inventory


def cmd_groups(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.policy.groups import resolve_policy_groups

    inputs = _load_inputs(args, err)
    if inputs is None:
        return EXIT_INVALID
    policy, inventory = inputs
    groups, errors, warnings = resolve_policy_groups(policy, inventory)
    for issue in warnings:
        print(f"warning: {issue.located(args.policy)}", file=err)
    for issue in errors:
        print(f"error: {issue.located(args.policy)}", file=err)
    if args.json:
        document = {"groups": {
            name: {"ips": list(g.ips), "nics": list(g.nic_ids),
                   "external": [str(p) for p in g.external]}
            for name, g in groups.items()
        }}
        json.dump(document, out, indent=2)
        out.write("\n")
    else:
        print(table(["Group", "Members", "NICs", "Prefixes"],
                    [[name, len(g.members), len(g.nic_ids),
                      ", ".join(str(p) for p in g.prefixes()[:6])
                      + (" ..." if len(g.prefixes()) > 6 else "")]
                     for name, g in groups.items()]), file=out)
    return EXIT_INVALID if errors else EXIT_OK  # a selector naming nothing: invalid input


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.policy.compiler import compile_policy
    from shared.policy.planner import build_plan
    from shared.render.plan_text import plan_table

    inputs = _load_inputs(args, err)
    if inputs is None:
        return EXIT_INVALID
    policy, inventory = inputs
    compiled = compile_policy(policy, inventory)
    for issue in compiled.resolution_warnings:
        print(f"warning: {issue.located(args.policy)}", file=err)
    for issue in compiled.unresolved:
        print(f"error: {issue.located(args.policy)}", file=err)
    plan = build_plan(compiled, inventory, policy.ownership)
    if args.json:
        json.dump(plan.as_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        print(plan_table(plan), file=out)
    if compiled.unresolved:
        return EXIT_INVALID  # the policy names what the snapshot does not hold
    return EXIT_FINDINGS if plan.has_errors else EXIT_OK


def cmd_policy_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    del args, err
    from shared.policy.loader import policy_json_schema

    json.dump(policy_json_schema(), out, indent=2, sort_keys=True)
    out.write("\n")
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

    for name, handler, text in (
        ("groups", cmd_groups, "resolve the policy's groups against a snapshot"),
        ("plan", cmd_plan, "compile the policy and show what would change on each NSG"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--policy", type=Path, required=True, help="policy file (YAML)")
        sub.add_argument("--snapshot", type=Path, required=True, help="snapshot file (JSON)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=handler)

    policy = commands.add_parser("policy", help="policy file tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True,
                                            metavar="COMMAND")
    schema = policy_commands.add_parser("schema", help="print the policy JSON Schema")
    schema.set_defaults(handler=cmd_policy_schema)

    demo = commands.add_parser(
        "demo", help="run the pipeline on the embedded sample estate with a local Azurite",
    )
    demo.add_argument("--out", type=Path, default=None,
                      help="also write the sample snapshot and flow logs to this folder")
    demo.set_defaults(handler=cmd_demo)
    add_azure_commands(commands)
    add_alert_commands(commands)
    add_analytics_commands(commands)
    add_report_commands(commands)
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
    try:
        code: int = args.handler(args, out, err)
    except BrokenPipeError:  # `zts plan | head`: the reader left; say nothing more
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit flush does not fail again
        return EXIT_FINDINGS
    return code


if __name__ == "__main__":
    raise SystemExit(main())
