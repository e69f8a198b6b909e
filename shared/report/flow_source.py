"""Observed flows from files (an adapter: it reads files and runs DuckDB).

Both paths go through the traffic-analytics engine (:class:`shared.adapters.duckdb_engine.
LocalEngine`), so the report sees exactly the NTANetAnalytics rows the detections see:

* raw VNet flow log blobs (``PT1H.json`` under a folder): the local Traffic-Analytics-style
  enricher (:meth:`LocalEngine.ingest_flow_logs`) builds the table from the blobs and the
  inventory;
* a Log Analytics export of NTANetAnalytics (JSON array or CSV): :meth:`LocalEngine.ingest_nta`.

The rows are then read back with one KQL ``project`` and turned into
:class:`shared.report.flows.ObservedFlow` by :func:`observed_flows_from_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from shared.domain.inventory import Inventory
from shared.report.flows import ObservedFlow, observed_flows_from_rows

COLUMNS: Final = (
    "SubType", "FlowType", "SrcIp", "DestIp", "SrcPublicIps", "DestPublicIps", "DestPort",
    "L4Protocol", "FlowDirection", "FlowStatus", "AllowedInFlows", "DeniedInFlows",
    "AllowedOutFlows", "DeniedOutFlows", "BytesSrcToDest", "BytesDestToSrc", "FlowStartTime",
    "FlowEndTime",
)
QUERY: Final = "NTANetAnalytics | project " + ", ".join(COLUMNS)


class FlowSourceError(Exception):
    """The flow data could not be read at all (the message says why)."""


@dataclass
class FlowLoad:
    flows: list[ObservedFlow]
    problems: list[str] = field(default_factory=list)  # what was skipped, and why


def _no_countries(ips: Sequence[str]) -> list[str | None]:
    """The report does not need countries: skip the country database."""
    return [None] * len(ips)


def _describe(report: Mapping[str, Any]) -> list[str]:
    problems = []
    for level in ("blobs", "records", "tuples", "rows"):
        part = report.get(level)
        if not isinstance(part, dict) or not part.get("skipped"):
            continue
        reasons = part.get("reasons") or {}
        detail = "; ".join(f"{reason} ({info.get('count', '?')})" for reason, info in
                           sorted(reasons.items()) if isinstance(info, dict))
        problems.append(f"{part['skipped']} {level} skipped: {detail}")
    return problems


def _read(engine: Any, problems: list[str]) -> FlowLoad:
    result = engine.run(QUERY)
    if result.error:
        raise FlowSourceError(f"reading the flow table failed: {result.error}")
    read = observed_flows_from_rows(result.rows)
    problems += [f"{count} flow row(s) skipped: {reason}"
                 for reason, count in sorted(read.skipped.items())]
    return FlowLoad(read.flows, problems)


def flows_from_flow_logs(root: Path, inventory: Inventory, raw_rows: Sequence[Mapping[str, Any]],
                         config_path: Path | None = None) -> FlowLoad:
    """Flows from raw VNet flow log blobs under ``root``. ``config_path`` is an analytics
    configuration (threat lists, service tags, interval); without it the defaults apply."""
    from shared.adapters.analytics_files import load_analytics_config, load_service_tags
    from shared.adapters.duckdb_engine import LocalEngine
    from shared.analytics.enrichment import EnrichmentTables

    if not root.is_dir():
        raise FlowSourceError(f"flow log folder {root} does not exist")
    loaded = load_analytics_config(config_path)
    if loaded.config is None:
        raise FlowSourceError("analytics configuration: " + "; ".join(
            str(e) for e in loaded.errors))
    try:
        tags = (load_service_tags(loaded.path(loaded.config.service_tags))
                if loaded.config.service_tags else None)
    except ValueError as error:
        raise FlowSourceError(str(error)) from error
    tables = EnrichmentTables.build(inventory, raw_rows, loaded.config, tags)
    with LocalEngine() as engine:
        report = engine.ingest_flow_logs(root, tables, _no_countries)
        return _read(engine, _describe(report.as_dict()))


def flows_from_nta_export(path: Path) -> FlowLoad:
    """Flows from an NTANetAnalytics export (JSON array of rows, or CSV with a header)."""
    from shared.adapters.duckdb_engine import LocalEngine

    if not path.is_file():
        raise FlowSourceError(f"{path} does not exist")
    with LocalEngine() as engine:
        try:
            report = engine.ingest_nta(path)
        except Exception as error:  # DuckDB raises many kinds for an unreadable export
            raise FlowSourceError(f"{path}: {type(error).__name__}: {error}") from error
        return _read(engine, _describe(report.as_dict()))
