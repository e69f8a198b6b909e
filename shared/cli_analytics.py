"""The ``zts`` traffic-analytics commands: ``analyze``, ``recommend`` and ``simulate``.

All three read flows from raw VNet flow log blobs (``--flow-logs DIR``, enriched locally into
NTANetAnalytics/NTAIpDetails-shaped DuckDB tables) or from rows exported from Log Analytics
(``--nta FILE [--nta-ip FILE]``, JSON array or CSV), and analyze the data over its own time
range unless ``--since``/``--until`` narrow it (never "the last N hours from now"). With
``--la-workspace ID`` (the Traffic Analytics workspace) or ``--adx-cluster URI --adx-database
DB`` the queries run on Log Analytics or an Azure Data Explorer database instead (signed in with
``DefaultAzureCredential``; ``ZTS_LA_ENDPOINT`` and ``ZTS_CA_BUNDLE`` for sovereign clouds and
tests) over ``--since`` .. ``--until`` (default: now), the one case where "now" is used: a live
database has no range of its own.

Exit codes: 0 checked and clean; 1 findings (``analyze``), changes (``simulate``), or anything
that could not be checked (skipped blobs, failed or partial queries, addresses without a
country); 2 invalid input or usage.

Register them with :func:`add_analytics_commands` on the ``zts`` sub-command parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shared.domain.normalize import SnapshotError, normalize
from shared.render.text import table

if TYPE_CHECKING:
    from shared.adapters.duckdb_engine import IngestReport, LocalEngine
    from shared.analytics.catalog import Catalog
    from shared.analytics.config import AnalyticsConfig
    from shared.analytics.enrichment import ServiceTags
    from shared.analytics.query import QueryEngine, Window
    from shared.domain.inventory import Inventory

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


class _Invalid(Exception):
    """Invalid input: the message is printed and the command exits 2."""


def _timestamp(text: str) -> datetime:
    """ISO-8601; a value without an offset is taken as UTC (flow logs are UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ip(text: str) -> str:
    try:
        return str(ip_address(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from err


@dataclass
class _Inputs:
    rows: list[Any]
    inventory: Inventory
    config: AnalyticsConfig
    engine: LocalEngine | QueryEngine
    ingest: IngestReport | None  # None: the flows are in Azure Data Explorer, not read here
    window: Window | None
    tags: ServiceTags | None


@contextmanager
def _open_inputs(args: argparse.Namespace,
                 detections: tuple[Catalog, dict[str, str]] | None = None) -> Iterator[_Inputs]:
    """Snapshot, configuration and flows, loaded into a local engine (closed afterwards); the
    ``detections`` that will run are handed to the engine first (translated while it reads)."""
    from shared.adapters.analytics_files import load_analytics_config, load_service_tags
    from shared.adapters.country_db import lookup_countries
    from shared.adapters.duckdb_engine import LocalEngine
    from shared.adapters.snapshot_file import read_snapshot
    from shared.analytics.enrichment import EnrichmentTables
    from shared.services.analytics import resolve_window

    try:
        rows = read_snapshot(args.snapshot)
        inventory = normalize(rows)
    except SnapshotError as error:
        raise _Invalid(str(error)) from None
    loaded = load_analytics_config(getattr(args, "config", None))
    if loaded.config is None:
        raise _Invalid("\n".join(f"error: {issue}" for issue in loaded.errors))
    config = loaded.config
    try:
        tags = load_service_tags(loaded.path(config.service_tags) if config.service_tags
                                 else None)
    except ValueError as err:
        raise _Invalid(str(err)) from None
    if args.adx_cluster is not None or args.la_workspace is not None:
        remote_engine = _adx_engine if args.adx_cluster is not None else _la_engine
        with remote_engine(args) as remote:
            yield _Inputs(rows, inventory, config, remote, None, _adx_window(args), tags)
        return
    engine = LocalEngine()
    try:
        if detections is not None:
            from shared.services.analytics import prepare

            prepare(engine, *detections, config=config, inventory=inventory)
        try:
            if args.flow_logs is not None:
                tables = EnrichmentTables.build(inventory, rows, config, tags)
                ingest = engine.ingest_flow_logs(args.flow_logs, tables, lookup_countries)
                if tags is None:
                    ingest.notes.append("no enrichment.service_tags configured: no flow is "
                                        "typed AzurePublic except the host VIP")
            else:
                ingest = engine.ingest_nta(args.nta, args.nta_ip)
        except (FileNotFoundError, ValueError) as err:
            raise _Invalid(str(err)) from None
        window = resolve_window(engine.data_range(), args.since, args.until)
        yield _Inputs(rows, inventory, config, engine, ingest, window, tags)
    finally:
        engine.close()


@contextmanager
def _adx_engine(args: argparse.Namespace) -> Iterator[QueryEngine]:
    import os

    from shared.adapters.adx import AdxEngine
    from shared.adapters.azure_clients import default_credential

    tables = {"NTANetAnalytics": args.adx_flow_table, "NTAIpDetails": args.adx_ip_table}
    try:
        engine = AdxEngine.connect(default_credential(), args.adx_cluster, args.adx_database,
                                   ca_bundle=os.environ.get("ZTS_CA_BUNDLE") or None,
                                   tables=tables)
    except ValueError as err:
        raise _Invalid(str(err)) from None
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def _la_engine(args: argparse.Namespace) -> Iterator[QueryEngine]:
    import os

    from shared.adapters.azure_clients import default_credential
    from shared.adapters.log_analytics import LogAnalyticsEngine

    options: dict[str, Any] = {}
    if os.environ.get("ZTS_CA_BUNDLE"):
        options["connection_verify"] = os.environ["ZTS_CA_BUNDLE"]
    engine = LogAnalyticsEngine.connect(default_credential(), args.la_workspace,
                                        endpoint=os.environ.get("ZTS_LA_ENDPOINT") or None,
                                        **options)
    try:
        yield engine
    finally:
        engine.close()


def _adx_window(args: argparse.Namespace) -> Window:
    from shared.analytics.query import Window

    until = args.until or datetime.now(UTC)
    try:
        return Window(args.since, until)
    except ValueError as err:
        raise _Invalid(f"--since/--until: {err}") from None


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", type=Path, required=True,
                        help="inventory snapshot (raw ARM JSON)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--flow-logs", type=Path, metavar="DIR",
                        help="folder of raw VNet flow log blobs (PT1H.json, any depth)")
    source.add_argument("--nta", type=Path, metavar="FILE",
                        help="NTANetAnalytics rows exported from Log Analytics (JSON or CSV)")
    source.add_argument("--la-workspace", metavar="ID",
                        help="run the queries on this Log Analytics workspace (the workspace "
                             "id of Traffic Analytics; needs --since; DefaultAzureCredential)")
    source.add_argument("--adx-cluster", metavar="URI",
                        help="run the queries on this Azure Data Explorer cluster "
                             "(https://<name>.<region>.kusto.windows.net; needs "
                             "--adx-database and --since; DefaultAzureCredential)")
    parser.add_argument("--adx-database", metavar="DB",
                        help="the ADX database holding the Traffic Analytics tables")
    parser.add_argument("--adx-flow-table", metavar="TABLE", default="NTANetAnalytics",
                        help="its NTANetAnalytics table (default: NTANetAnalytics)")
    parser.add_argument("--adx-ip-table", metavar="TABLE", default="NTAIpDetails",
                        help="its NTAIpDetails table (default: NTAIpDetails)")
    parser.add_argument("--nta-ip", type=Path, metavar="FILE",
                        help="NTAIpDetails rows exported from Log Analytics (with --nta)")
    parser.add_argument("--config", type=Path, help="analytics configuration (YAML)")
    parser.add_argument("--since", type=_timestamp, metavar="TIME",
                        help="analyze flows starting at or after TIME (ISO-8601, UTC default)")
    parser.add_argument("--until", type=_timestamp, metavar="TIME",
                        help="analyze flows starting before TIME (with --la-workspace or "
                             "--adx-cluster: default now)")


def _check_sources(args: argparse.Namespace) -> None:
    if args.nta_ip is not None and args.nta is None:
        raise _Invalid("--nta-ip needs --nta")
    if args.adx_cluster is None and args.adx_database is not None:
        raise _Invalid("--adx-database needs --adx-cluster")
    if args.la_workspace is not None and args.since is None:
        raise _Invalid("--la-workspace needs --since (the start of the time range to analyze)")
    if args.adx_cluster is not None:
        if not args.adx_database:
            raise _Invalid("--adx-cluster needs --adx-database")
        if args.since is None:
            raise _Invalid("--adx-cluster needs --since (the start of the time range to "
                           "analyze)")


def _handle(body: Callable[[argparse.Namespace, TextIO, TextIO], int]) -> Callable[
        [argparse.Namespace, TextIO, TextIO], int]:
    def handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        try:
            _check_sources(args)
            return body(args, out, err)
        except _Invalid as invalid:
            message = str(invalid)
            print(message if message.startswith("error:") else f"zts: {message}", file=err)
            return EXIT_INVALID
    return handler


def _dump(document: Any, out: TextIO) -> None:
    json.dump(document, out, indent=2)
    out.write("\n")


# -- analyze ---------------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.adapters.analytics_files import load_detections
    from shared.analytics.enrichment import tag_networks
    from shared.policy.evaluator import NsgEvaluator
    from shared.services.analytics import AnalysisReport, analyze

    catalog, queries = load_detections()
    with _open_inputs(args, (catalog, queries)) as inputs:
        if inputs.window is None:
            report = AnalysisReport([], {"engine": inputs.engine.name, "complete": False,
                                         "error": "no flows to analyze in the given range"})
        else:
            report = analyze(inputs.engine, catalog, queries, config=inputs.config,
                             window=inputs.window, inventory=inputs.inventory,
                             origins=args.origin or (),
                             evaluator=NsgEvaluator(inputs.inventory,
                                                    service_tag_ranges=tag_networks(inputs.tags)))
        if inputs.ingest is not None:
            report.stats["input"] = inputs.ingest.as_dict()
            if not inputs.ingest.clean:
                report.stats["complete"] = False
    if args.json:
        _dump(report.as_json(), out)
    else:
        _print_report(report.as_json(), out, err)
    code = EXIT_OK if report.complete and not report.findings else EXIT_FINDINGS
    if args.alert is not None:
        from shared.cli_alerts import route_findings

        checked = sorted(name for name, s in (report.stats.get("detections") or {}).items()
                         if s.get("status") == "ok" and s.get("complete", True))
        routed = route_findings(args.alert, report.findings, checked, err, err)
        code = max(code, routed)
    return code


def _print_report(document: dict[str, Any], out: TextIO, err: TextIO) -> None:
    findings = document["findings"]
    stats = document["stats"]
    if findings:
        print(table(["Detection", "Severity", "Summary"],
                    [[f["detection"], f["severity"], f["summary"]] for f in findings]), file=out)
    else:
        print("No findings.", file=out)
    window = stats.get("window") or {}
    print(f"\nWindow {window.get('start', '-')} .. {window.get('end', '-')}, engine "
          f"{stats.get('engine')}", file=out)
    for name, detection in (stats.get("detections") or {}).items():
        line = f"  {name}: {detection['status']}, {detection['findings']} finding(s)"
        if detection.get("error"):
            line += f" - {detection['error']}"
        print(line, file=out)
    source = stats.get("input") or {}
    for level in ("blobs", "records", "tuples", "rows"):
        part = source.get(level)
        if part and part.get("skipped"):
            reasons = ", ".join(f"{r} ({v['count']})" for r, v in part["reasons"].items())
            print(f"warning: {part['skipped']} {level} skipped: {reasons}", file=err)
    if not stats.get("complete"):
        print("warning: the analysis is INCOMPLETE - some traffic could not be checked "
              "(see stats in --json output); silence here does not mean clean", file=err)


# -- recommend and simulate ----------------------------------------------------------------------


def _observed(inputs: _Inputs) -> list[Any]:
    from shared.adapters.analytics_files import KQL_DIR
    from shared.analytics.kql import preamble
    from shared.analytics.query import QueryStatus
    from shared.analytics.recommend import observed_from_rows

    if inputs.window is None:
        raise _Invalid("no flows to analyze in the given range")
    body = (KQL_DIR / "observed_flows.kql").read_text(encoding="utf-8")
    text = preamble([("WindowStart", inputs.window.start), ("WindowEnd", inputs.window.end)])
    result = inputs.engine.run(text + body, inputs.window)
    if result.status is not QueryStatus.OK:
        raise _Invalid(f"could not read the observed flows: {result.error}")
    return observed_from_rows(result.rows)


def _load_policy(path: Path, err: TextIO) -> Any:
    from shared.policy.loader import load_policy_file

    loaded = load_policy_file(path)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=err)
    if loaded.policy is None:
        raise _Invalid("\n".join(f"error: {issue}" for issue in loaded.errors))
    return loaded.policy


def _recommend(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import yaml

    from shared.analytics.recommend import coverage, recommend
    from shared.policy.groups import resolve_policy_groups
    from shared.policy.loader import load_policy

    with _open_inputs(args) as inputs:
        flows = _observed(inputs)
        existing = base = None
        groups: dict[str, Any] = {}
        if args.policy is not None:
            existing = _load_policy(args.policy, err)
            groups, _, _ = resolve_policy_groups(existing, inputs.inventory)
            base = yaml.safe_load(args.policy.read_text(encoding="utf-8"))
        found = recommend(flows, inputs.inventory, existing, groups)
        text = found.yaml_text(base)
        loaded = load_policy(text, "<recommended>")
        if loaded.policy is None:  # a bug, not user input: say so loudly
            for issue in loaded.errors:
                print(f"error: recommended policy: {issue}", file=err)
            return EXIT_FINDINGS
        resolved, _, _ = resolve_policy_groups(loaded.policy, inputs.inventory)
        measured = coverage(loaded.policy, resolved, flows)
        before = coverage(existing, groups, flows).as_dict() if existing is not None else None
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    summary = {"rules": len(found.rules), "groups": len(found.groups),
               "coverage": measured.as_dict(), "coverage_before": before,
               "skipped": found.skipped, "policy": str(args.out) if args.out else None}
    if args.json:
        _dump({**summary, "yaml": text if args.out is None else None}, out)
    else:
        if args.out is None:
            out.write(text)
        print(f"{len(found.rules)} rule(s) over {len(found.groups)} new group(s); coverage "
              f"{measured.share:.1%} of {measured.allowed_flows} observed allowed flows "
              f"({measured.covered_connections}/{measured.connections} connections)",
              file=err)
    return EXIT_OK


def _simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.analytics.enrichment import tag_networks
    from shared.analytics.simulate import simulate

    policy = _load_policy(args.policy, err)
    with _open_inputs(args) as inputs:
        flows = _observed(inputs)
        result = simulate(policy, inputs.rows, inputs.inventory, flows,
                          tag_networks(inputs.tags))
        document = result.as_dict()
        if inputs.ingest is not None:
            document["input"] = inputs.ingest.as_dict()
    if args.json:
        _dump(document, out)
    else:
        summary = document["summary"]
        print(f"{summary['connections']} observed connection(s), {summary['flows']} flow(s): "
              f"{summary['newly_denied_flows']} flow(s) allowed today would be DENIED, "
              f"{summary['newly_allowed_flows']} denied today would be ALLOWED", file=out)
        for title, changes in (("Would be denied (allowed today)", result.newly_denied),
                               ("Would be allowed (denied today)", result.newly_allowed)):
            if changes:
                print(f"\n{title}:", file=out)
                print(table(["From", "To", "Protocol", "Port", "Flows", "Example"],
                            [[c.src_group, c.dst_group, c.protocol, c.port, c.flows,
                              c.examples[0] if c.examples else ""] for c in changes]), file=out)
        for error in result.plan_errors:
            print(f"warning: plan error, NSG left as it is in the simulation: {error}", file=err)
    changed = result.newly_denied or result.newly_allowed
    return EXIT_FINDINGS if changed or not result.complete else EXIT_OK


# -- registration ----------------------------------------------------------------------------------


def add_analytics_commands(commands: Any) -> None:
    """Register ``analyze``, ``recommend`` and ``simulate`` on the ``zts`` sub-command parser."""
    analyze = commands.add_parser(
        "analyze", help="run the traffic detections on flow logs, exported NTA rows or an "
                        "Azure Data Explorer database",
        description="Risky regions, malicious flows, Azure-service dependencies, "
                    "cross-subscription flows and blast radius, from the .kql detections.")
    _source_arguments(analyze)
    analyze.add_argument("--origin", type=_ip, action="append", metavar="IP",
                         help="a compromised IP to compute the blast radius from "
                              "(repeatable; in addition to the automatic origins)")
    analyze.add_argument("--json", action="store_true", help="machine-readable output")
    analyze.add_argument("--alert", type=Path, metavar="ALERT_CONFIG",
                         help="route the findings through this alert configuration (email, "
                              "Teams; deduplicated; see docs/alerts.md)")
    analyze.set_defaults(handler=_handle(_analyze))

    rec = commands.add_parser(
        "recommend", help="least-privilege allow rules between groups, from observed flows",
        description="Group observed hosts (policy groups, ASG, tags, subnet) and write allow "
                    "rules for the observed allowed traffic as a policy YAML, with coverage.")
    _source_arguments(rec)
    rec.add_argument("--policy", type=Path, help="existing policy to extend (its groups are "
                                                 "reused; rules are added only where needed)")
    rec.add_argument("--out", type=Path, help="write the policy YAML here (default: stdout)")
    rec.add_argument("--json", action="store_true", help="machine-readable summary")
    rec.set_defaults(handler=_handle(_recommend))

    sim = commands.add_parser(
        "simulate", help="what-if: replay observed flows against a compiled policy",
        description="List what the policy, once enforced, would deny that is allowed today "
                    "(and the reverse), by group pair and port.")
    sim.add_argument("--policy", type=Path, required=True, help="policy file (YAML)")
    _source_arguments(sim)
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(handler=_handle(_simulate))


def main(argv: list[str] | None = None) -> int:
    """Run the analytics commands stand-alone (until shared/cli.py registers them)."""
    parser = argparse.ArgumentParser(prog="zts")
    add_analytics_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
