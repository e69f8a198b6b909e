"""The ``zts`` commands that talk to Azure: ``discover``, ``apply``, ``plans``.

Credentials come from ``DefaultAzureCredential`` (managed identity, Azure CLI sign-in,
workload identity...); there is no secret option. Settings (environment):

* ``ZTS_ARM_ENDPOINT`` — Resource Manager URL (default public cloud); ``ZTS_CA_BUNDLE`` — an
  extra CA file to trust;
* ``ZTS_STORAGE_TABLE_ENDPOINT`` (with the identity) or ``ZTS_STORAGE_CONNECTION_STRING``
  (Azurite, development) — where inventory, plans and the audit trail live;
* ``ZTS_TABLE_PREFIX`` — prefix of the plan/audit tables (default ``zts``);
  ``ZTS_INVENTORY_TABLE`` — the inventory table (default ``Inventory``);
* ``ZTS_LRO_POLL_SECONDS`` — seconds between polls of a running NSG update (default 5).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shared.domain.discovery import DiscoveryResult, DiscoveryScope
from shared.errors import SourceUnavailable, ZtsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.adapters.audit_store import TableAuditLog
    from shared.domain.inventory import Inventory
    from shared.services.enforcement import ReconcileReport

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


def _credential() -> TokenCredential:
    from shared.adapters.azure_clients import default_credential

    return default_credential()


def _audit_log(env: Mapping[str, str]) -> TableAuditLog | None:
    from shared.adapters.audit_store import TableAuditLog

    prefix = env.get("ZTS_TABLE_PREFIX") or "zts"
    if env.get("ZTS_STORAGE_CONNECTION_STRING"):
        return TableAuditLog.from_connection_string(env["ZTS_STORAGE_CONNECTION_STRING"], prefix)
    if env.get("ZTS_STORAGE_TABLE_ENDPOINT"):
        return TableAuditLog.from_endpoint(env["ZTS_STORAGE_TABLE_ENDPOINT"], _credential(),
                                           prefix)
    return None


def _scope(args: argparse.Namespace) -> DiscoveryScope:
    return DiscoveryScope(tuple(args.subscription or ()), args.management_group)


def _discover(args: argparse.Namespace, err: TextIO) -> DiscoveryResult:
    from shared.adapters.arm_listing import ArmListingSource
    from shared.adapters.azure_clients import ArmSettings
    from shared.adapters.resource_graph import ResourceGraphSource
    from shared.services.discovery import discover

    settings = ArmSettings.from_env()
    credential = _credential()
    arm = ArmListingSource(credential, settings)
    if args.no_resource_graph:
        result = discover(_scope(args), arm)
    else:
        graph = ResourceGraphSource(credential, settings)
        try:
            result = discover(_scope(args), graph, arm)
        finally:
            graph.close()
    for note in result.notes:
        print(f"note: {note}", file=err)
    for sub, reason in sorted(result.failed.items()):
        print(f"error: subscription {sub}: {reason}", file=err)
    return result


def cmd_discover(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        result = _discover(args, err)
    except SourceUnavailable as error:
        print(f"zts: discovery is not possible: {error}", file=err)
        return EXIT_INVALID
    if args.out:
        args.out.write_text(json.dumps({"data": result.rows}, indent=1, sort_keys=True) + "\n",
                            encoding="utf-8")
    summary = result.summary()
    if args.persist:
        persisted = _persist(result, err)
        if persisted is None:
            return EXIT_INVALID
        summary["persist"] = persisted
    if args.json:
        json.dump(summary, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        print(f"{summary['rows']} resources from {summary['complete']} of "
              f"{summary['subscriptions']} subscription(s); requests: {summary['requests']}"
              + (f"; written to {args.out}" if args.out else ""), file=out)
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _persist(result: DiscoveryResult, err: TextIO) -> dict[str, Any] | None:
    from shared.adapters.table_store import DEFAULT_TABLE_NAME, TableInventoryStore
    from shared.services.enforcement import new_plan_id
    from shared.services.inventory_sync import persist_run

    env = os.environ
    table = env.get("ZTS_INVENTORY_TABLE") or DEFAULT_TABLE_NAME
    if env.get("ZTS_STORAGE_CONNECTION_STRING"):
        store = TableInventoryStore.from_connection_string(env["ZTS_STORAGE_CONNECTION_STRING"],
                                                           table)
    elif env.get("ZTS_STORAGE_TABLE_ENDPOINT"):
        store = TableInventoryStore.from_endpoint(env["ZTS_STORAGE_TABLE_ENDPOINT"],
                                                  _credential(), table)
    else:
        print("zts: --persist needs ZTS_STORAGE_TABLE_ENDPOINT or ZTS_STORAGE_CONNECTION_STRING",
              file=err)
        return None
    with store:
        persisted = persist_run(result.rows, store, new_plan_id(datetime.now(UTC)),
                                result.complete)
    return {"ok": persisted.ok, "swept": len(persisted.swept),
            "notSwept": sorted(set(result.failed) | set(persisted.not_swept))}


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.adapters.arm_nsg import ArmNsgGateway
    from shared.adapters.azure_clients import ArmSettings
    from shared.policy.guardrails import Guardrails
    from shared.policy.loader import load_policy_file
    from shared.services.enforcement import Reconciler

    loaded = load_policy_file(args.policy)
    for issue in loaded.warnings:
        print(f"warning: {issue}", file=err)
    for issue in loaded.errors:
        print(f"error: {issue}", file=err)
    if loaded.policy is None:
        return EXIT_INVALID
    audit = _audit_log(os.environ)
    if args.yes and audit is None:
        print("zts: applying needs a state store for the plan and the audit trail: set "
              "ZTS_STORAGE_TABLE_ENDPOINT (or ZTS_STORAGE_CONNECTION_STRING)", file=err)
        return EXIT_INVALID
    inventory = _apply_inventory(args, err)
    if isinstance(inventory, int):
        return inventory
    gateway = ArmNsgGateway(_credential(), ArmSettings.from_env()) if args.yes else None
    reconciler = Reconciler(
        loaded.policy, gateway, audit,
        Guardrails(max_delete_fraction=args.max_delete,
                   refuse_unwritten_open_allows=not args.allow_unwritten_open_allows),
        trigger="cli",
        actor=os.environ.get("ZTS_ACTOR") or f"cli:{getpass.getuser()}")
    try:
        report = reconciler.run(inventory, apply=args.yes)
    except ZtsError as error:
        print(f"zts: {error}", file=err)
        return EXIT_FINDINGS
    finally:
        if gateway is not None:
            gateway.close()
        if audit is not None:
            audit.close()
    _print_report(report, args.json, out, err, stored=audit is not None)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _apply_inventory(args: argparse.Namespace, err: TextIO) -> Inventory | int:
    """Group membership for ``apply``: the snapshot, or a complete discovery; else an exit code."""
    from shared.adapters.snapshot_file import read_snapshot
    from shared.domain.normalize import SnapshotError, normalize
    from shared.render.text import load_problems

    try:
        if args.snapshot:
            rows = read_snapshot(args.snapshot)
        else:
            result = _discover(args, err)
            if not result.ok:
                print("zts: discovery was incomplete; refusing to plan on a partial inventory "
                      "(a missing NIC would drop out of its groups)", file=err)
                return EXIT_FINDINGS
            rows = result.rows
        inventory = normalize(rows)
    except (SnapshotError, SourceUnavailable) as error:
        print(f"zts: {error}", file=err)
        return EXIT_INVALID
    problems = load_problems(inventory.report)
    if problems:
        print(problems, file=err)
    return inventory


def _print_report(report: ReconcileReport, as_json: bool, out: TextIO, err: TextIO, *,
                  stored: bool) -> None:
    from shared.render.plan_text import plan_table

    if as_json:
        json.dump(report.as_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
        return
    print(plan_table(report.plan), file=out)
    for reason in report.refused:
        print(f"refused: {reason}", file=err)
    for outcome in report.outcomes:
        line = f"{outcome.result:8} {outcome.nsg_id}"
        if outcome.message:
            line += f" — {outcome.message}"
        print(line, file=out)
    for finding in report.findings:
        print(f"finding [{finding.severity}] {finding.title}", file=out)
    summary = report.summary()
    mode = "dry run (add --yes to apply)" if report.dry_run else "applied"
    print(f"plan {report.plan_id}: {mode}; {summary['nsgsToChange']} NSG(s) to change, "
          f"{summary['writes']} write(s)" + ("" if stored else "; plan not stored (no state "
                                                              "store configured)"), file=out)


def cmd_plans(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    audit = _audit_log(os.environ)
    if audit is None:
        print("zts: set ZTS_STORAGE_TABLE_ENDPOINT (or ZTS_STORAGE_CONNECTION_STRING) to read "
              "stored plans", file=err)
        return EXIT_INVALID
    with audit:
        if args.plans_command == "list":
            json.dump(audit.list_plans(args.limit), out, indent=2, sort_keys=True)
            out.write("\n")
            return EXIT_OK
        try:
            plan = audit.get_plan(args.plan_id)
        except ValueError as error:
            print(f"zts: {error}", file=err)
            return EXIT_INVALID
        if plan is None:
            print(f"zts: no plan {args.plan_id!r}", file=err)
            return EXIT_FINDINGS
        plan["writes"] = audit.entries(args.plan_id)
        json.dump(plan, out, indent=2, sort_keys=True)
        out.write("\n")
    return EXIT_OK


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", action="append", metavar="ID",
                        help="limit to this subscription (repeat for several); default: every "
                             "subscription the identity can read")
    parser.add_argument("--management-group", metavar="NAME",
                        help="limit to the subscriptions under this management group")
    parser.add_argument("--no-resource-graph", action="store_true",
                        help="list each subscription through ARM instead of Resource Graph")


def add_azure_commands(commands: Any) -> None:
    """Register ``discover``, ``apply`` and ``plans`` on the ``zts`` sub-command parser."""
    discover = commands.add_parser(
        "discover", help="read the estate from Azure (Resource Graph, ARM fallback)",
        description="Discover VNets, subnets, NICs, ASGs, NSGs, VMs, private endpoints and "
                    "resource groups with DefaultAzureCredential.")
    _scope_arguments(discover)
    discover.add_argument("--out", type=Path, help="write the snapshot (JSON) to this file")
    discover.add_argument("--persist", action="store_true",
                          help="save to Table Storage and sweep what complete subscriptions no "
                               "longer hold")
    discover.add_argument("--json", action="store_true", help="machine-readable summary")
    discover.set_defaults(handler=cmd_discover)

    apply = commands.add_parser(
        "apply", help="plan the policy against live NSGs and, with --yes, apply it",
        description="Dry run by default: shows the plan and stores it. With --yes each changed "
                    "NSG is written once, conditionally on its etag.")
    apply.add_argument("--policy", type=Path, required=True, help="policy file (YAML)")
    apply.add_argument("--snapshot", type=Path,
                       help="take group membership from this snapshot instead of discovering")
    _scope_arguments(apply)
    apply.add_argument("--yes", action="store_true", help="apply the plan (default: dry run)")
    apply.add_argument("--max-delete", type=float, default=0.25, metavar="FRACTION",
                       help="refuse a run deleting more than this share of zts-owned rules "
                            "(default 0.25; 1 disables)")
    apply.add_argument("--allow-unwritten-open-allows", action="store_true",
                       help="break glass: do not refuse inbound allows from */Internet/0.0.0.0/0 "
                            "that the policy does not write as 'from: internet' or 'from: any'")
    apply.add_argument("--json", action="store_true", help="machine-readable report")
    apply.set_defaults(handler=cmd_apply)

    plans = commands.add_parser("plans", help="stored plans and their audit trail")
    plan_commands = plans.add_subparsers(dest="plans_command", required=True, metavar="COMMAND")
    show = plan_commands.add_parser("show", help="one plan with every write it made")
    show.add_argument("plan_id", metavar="ID")
    show.set_defaults(handler=cmd_plans)
    listing = plan_commands.add_parser("list", help="the newest plans")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=cmd_plans)
