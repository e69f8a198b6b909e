"""``zts report``: the segmentation map, findings, blast radius and plan as one HTML file.

    zts report --snapshot S [--policy P] [--flow-logs DIR [--config FILE] | --nta FILE]
               [--findings FILE] [--title T] --out report.html

Exit codes: 0 written, 2 invalid input (snapshot, policy, findings or flow data unusable; every
problem is printed and nothing is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from shared.domain.inventory import Inventory
    from shared.policy.model import Policy
    from shared.report.findings import ReportFinding
    from shared.report.flow_source import FlowLoad

EXIT_OK, EXIT_INVALID = 0, 2

__all__ = ["add_report_commands", "cmd_report"]


class _Invalid(Exception):
    """An input is unusable; its problems were printed."""


def _policy(path: Path | None, err: TextIO) -> Policy | None:
    from shared.policy.loader import load_policy_file

    if path is None:
        return None
    loaded = load_policy_file(path)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=err)
    for error in loaded.errors:
        print(f"error: {error}", file=err)
    if loaded.policy is None:
        raise _Invalid
    return loaded.policy


def _findings(path: Path | None, err: TextIO) -> list[ReportFinding]:
    from shared.report.service import findings_from_file

    if path is None:
        return []
    findings, problems = findings_from_file(path)
    for problem in problems:
        print(f"error: {problem}", file=err)
    if problems:
        raise _Invalid
    return findings


def _flows(args: argparse.Namespace, inventory: Inventory, rows: list[Any],
           err: TextIO) -> FlowLoad | None:
    from shared.report.flow_source import (
        FlowSourceError,
        flows_from_flow_logs,
        flows_from_nta_export,
    )

    try:
        if args.flow_logs is not None:
            load = flows_from_flow_logs(args.flow_logs, inventory, rows, args.analytics_config)
        elif args.nta is not None:
            load = flows_from_nta_export(args.nta)
        else:
            return None
    except FlowSourceError as error:
        print(f"zts: {error}", file=err)
        raise _Invalid from error
    for problem in load.problems:
        print(f"warning: {problem}", file=err)
    return load


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.adapters.snapshot_file import read_snapshot
    from shared.domain.normalize import SnapshotError, normalize
    from shared.render.text import load_problems
    from shared.report.service import write_report

    try:
        rows = read_snapshot(args.snapshot)
    except SnapshotError as error:
        print(f"zts: {error}", file=err)
        return EXIT_INVALID
    inventory = normalize(rows)
    problems = load_problems(inventory.report)
    if problems:
        print(problems, file=err)
    try:
        policy = _policy(args.policy, err)
        findings = _findings(args.findings, err)
        load = _flows(args, inventory, rows, err)
    except _Invalid:
        return EXIT_INVALID
    sources = {"snapshot": args.snapshot.name}
    for name, path in (("policy", args.policy), ("findings", args.findings),
                       ("flow logs", args.flow_logs), ("NTA export", args.nta)):
        if path is not None:
            sources[name] = path.name
    flows = load.flows if load is not None else None
    notes = [f"flow data: {p}" for p in load.problems] if load is not None else []
    path = write_report(inventory, policy, flows, findings, args.out, title=args.title,
                        notes=notes, sources=sources)
    print(f"wrote {path} ({path.stat().st_size:,} bytes; {len(findings)} finding(s), "
          f"{'no flow data' if flows is None else f'{len(flows)} flow record(s)'})", file=out)
    return EXIT_OK


def add_report_commands(commands: Any) -> None:
    """Register ``zts report`` on the CLI's sub-command parsers."""
    report = commands.add_parser(
        "report", help="write the segmentation map and findings report (one HTML file)",
        description="Write one self-contained HTML page: a map of the policy's groups with "
                    "the allows and the observed traffic between them, the findings, the blast "
                    "radius of compromised hosts and the plan. It makes no network requests.")
    report.add_argument("--snapshot", type=Path, required=True, help="snapshot file (JSON)")
    report.add_argument("--policy", type=Path, default=None,
                        help="policy file (YAML); without it the map shows VNets")
    flows = report.add_mutually_exclusive_group()
    flows.add_argument("--flow-logs", type=Path, default=None, metavar="DIR",
                       help="folder of raw VNet flow log blobs (PT1H.json)")
    flows.add_argument("--nta", type=Path, default=None, metavar="FILE",
                       help="NTANetAnalytics export from Log Analytics (JSON array or CSV)")
    report.add_argument("--config", "--analytics-config", dest="analytics_config", type=Path,
                        default=None, metavar="FILE",
                        help="analytics configuration (YAML) for --flow-logs, as for zts "
                             "analyze (service tags, threat lists, interval)")
    report.add_argument("--findings", type=Path, default=None,
                        help='findings JSON ({"findings": [...]}, e.g. from zts analyze)')
    report.add_argument("--title", default="zts segmentation report", help="page title")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.set_defaults(handler=cmd_report)
