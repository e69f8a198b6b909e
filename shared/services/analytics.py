"""The analyze use-case: run every detection's ``.kql`` on an engine, map rows to findings,
compute the blast radius, and say exactly what was and was not checked.

The engine is a port (:class:`shared.analytics.query.QueryEngine`): the local DuckDB engine
over enriched flow logs or exported rows, Log Analytics, or Azure Data Explorer - the same
queries everywhere. A detection whose query failed or came back partial is never reported as
clean: its status says so, ``stats.complete`` is false, and the CLI exits non-zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any

from shared.analytics.blast_radius import (
    EdgeMoments,
    EdgeMomentSource,
    PolicyReach,
    TemporalGraph,
    blast_radius_finding,
    edges_from_rows,
    policy_reach,
)
from shared.analytics.catalog import Catalog, render_query
from shared.analytics.config import AnalyticsConfig
from shared.analytics.detections import MAPPERS, Context, Mapped, Origin, iso, merge_origins
from shared.analytics.kql import KqlValueError
from shared.analytics.query import QueryEngine, QueryResult, QueryStatus, Window
from shared.domain.findings import SEVERITIES, Finding
from shared.domain.inventory import Inventory
from shared.policy.evaluator import NsgEvaluator


@dataclass
class AnalysisReport:
    """Findings (sorted, deterministic) and the run's statistics."""

    findings: list[Finding]
    stats: dict[str, Any]

    @property
    def complete(self) -> bool:
        return bool(self.stats.get("complete"))

    def as_json(self) -> dict[str, Any]:
        """The documented output: ``{"findings": [{"detection", "severity", "fingerprint",
        "summary", "evidence", "resource", "observedAt"}], "stats": {...}}`` (``resource``: the
        ARM id the finding is about, ``""`` when none is known; ``observedAt``: ISO 8601)."""
        return {
            "findings": [{"detection": f.detection, "severity": f.severity,
                          "fingerprint": f.fingerprint, "summary": f.title,
                          "evidence": f.evidence, "resource": f.resource_id,
                          "observedAt": f.observed_at.isoformat()} for f in self.findings],
            "stats": self.stats,
        }


@dataclass
class _Status:
    status: str = QueryStatus.OK.value
    rows: int = 0
    findings: int = 0
    error: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "rows": self.rows,
                               "findings": self.findings}
        if self.error:
            out["error"] = self.error
        out.update(self.notes)
        return out


def _run(engine: QueryEngine, text: str, window: Window) -> QueryResult:
    try:
        return engine.run(text, window)
    except Exception as err:
        return QueryResult.failed(f"{type(err).__name__}: {err}")


_Edges = EdgeMoments | QueryResult


def _blast_edges(engine: QueryEngine, text: str, window: Window) -> _Edges:
    """The blast-radius edges: reduced by the engine when it can, else its rows."""
    moments = _edge_moments(engine, text, window)
    return moments if moments is not None else _run(engine, text, window)


class _Prefetch:
    """Queries started before their results are needed, when the engine says it can run
    several at once (``concurrent_queries``, e.g. the local DuckDB engine: a query keeps about
    one and a half of its cores busy). Results are still taken, and mapped, in catalog order,
    so the report is the same as when they run one by one, which they do without the attribute.
    """

    def __init__(self, engine: QueryEngine) -> None:
        workers = getattr(engine, "concurrent_queries", 1)
        self._pool = (ThreadPoolExecutor(workers, thread_name_prefix="zts-query")
                      if isinstance(workers, int) and workers > 1 else None)
        self._started: dict[str, Future[Any]] = {}

    def start(self, key: str, job: Callable[[], Any]) -> None:
        if self._pool is not None and key not in self._started:
            self._started[key] = self._pool.submit(job)

    def result(self, key: str, job: Callable[[], Any]) -> Any:
        started = self._started.pop(key, None)
        return started.result() if started is not None else job()

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def analyze(engine: QueryEngine, catalog: Catalog, queries: Mapping[str, str], *,
            config: AnalyticsConfig, window: Window, inventory: Inventory | None,
            origins: Sequence[str] = (), evaluator: NsgEvaluator | None = None,
            subscriptions: Iterable[str] = ()) -> AnalysisReport:
    """Run the catalog on ``engine`` over ``window``.

    ``origins`` are extra compromised IPs (``--origin``), taken as compromised from the start
    of the window. ``subscriptions`` expands ``*`` in allowed cross-subscription pairs
    (the inventory's subscriptions are always included).
    """
    known_subs = _subscriptions(inventory, subscriptions)
    statuses: dict[str, _Status] = {}
    findings: list[Finding] = []
    found_origins: list[Origin] = []
    named = [Origin(ip, window.start, ("named with --origin",)) for ip in origins]
    texts = _detection_texts(engine, catalog, queries, config, window, known_subs)
    with _Prefetch(engine) as prefetch:
        if named or getattr(engine, "speculate_blast_radius", False):
            # the longest query first: an engine that runs queries locally (no cost per
            # query) may start it before knowing whether any origin will need it
            _prefetch_blast(prefetch, engine, catalog, queries, config, window)
        for key, text in texts.items():
            if isinstance(text, str):
                prefetch.start(key, partial(_run, engine, text, window))
        for detection in catalog.detections:
            if detection.id == "blast_radius":
                continue
            status = statuses[detection.id] = _Status()
            text = texts[detection.id]
            if not isinstance(text, str):
                status.status, status.error = (QueryStatus.FAILED.value,
                                               f"cannot build query: {text}")
                continue
            result = prefetch.result(detection.id, partial(_run, engine, text, window))
            status.status, status.error, status.rows = result.status.value, result.error, len(
                result.rows)
            mapped: Mapped = MAPPERS[detection.id](
                result.rows, Context(config, inventory, detection.severity))
            status.findings = len(mapped.findings)
            status.notes.update(mapped.notes)
            findings += mapped.findings
            found_origins += mapped.origins
            if mapped.origins:  # there will be a blast radius to compute: start its query
                _prefetch_blast(prefetch, engine, catalog, queries, config, window)
            if detection.id == "risky_region" and mapped.notes.get("public_without_country"):
                status.notes["complete"] = False
        blast = _blast_radius(engine, catalog, queries, config, window, inventory, evaluator,
                              merge_origins([*found_origins, *named]), statuses, prefetch)
    findings += blast
    order = {d.id: i for i, d in enumerate(catalog.detections)}
    findings.sort(key=lambda f: (order.get(f.detection, 99), -SEVERITIES.index(f.severity),
                                 f.observed_at, f.fingerprint))
    complete = all(s.status == QueryStatus.OK.value and s.notes.get("complete", True)
                   for s in statuses.values())
    stats: dict[str, Any] = {
        "engine": getattr(engine, "name", "unknown"),
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "complete": complete,
        "findings": len(findings),
        "by_severity": dict(sorted(Counter(f.severity for f in findings).items(),
                                   key=lambda kv: SEVERITIES.index(kv[0]))),
        "detections": {d.id: statuses[d.id].as_dict() for d in catalog.detections
                       if d.id in statuses},
    }
    return AnalysisReport(findings, stats)


def _rendered_window(engine: QueryEngine, window: Window) -> Window | None:
    """The window to write into query texts: None (declared as query parameters, bound by the
    engine from run()'s window) for an engine that ``binds_window``."""
    return None if getattr(engine, "binds_window", False) else window


def _detection_texts(engine: QueryEngine, catalog: Catalog, queries: Mapping[str, str],
                     config: AnalyticsConfig, window: Window | None,
                     subscriptions: Iterable[str]) -> dict[str, str | Exception]:
    """Every detection's query text but the blast radius's, or why it cannot be built."""
    rendered = None if window is None else _rendered_window(engine, window)
    texts: dict[str, str | Exception] = {}
    for detection in catalog.detections:
        if detection.id == "blast_radius":
            continue
        try:
            texts[detection.id] = render_query(detection, queries[detection.id], config,
                                               rendered, subscriptions)
        except (KeyError, KqlValueError) as err:
            texts[detection.id] = err
    return texts


def _subscriptions(inventory: Inventory | None, subscriptions: Iterable[str]) -> set[str]:
    known = set(subscriptions)
    if inventory is not None:
        known |= {s.subscription_id.lower() for s in inventory.subscriptions.values()}
    return known


def prepare(engine: QueryEngine, catalog: Catalog, queries: Mapping[str, str], *,
            config: AnalyticsConfig, inventory: Inventory | None,
            subscriptions: Iterable[str] = ()) -> None:
    """Hand the queries :func:`analyze` will run to an engine that can translate them ahead
    (the local engine, while it reads the flow logs); the same texts, so the same cache keys.
    Nothing happens for other engines. Call it before the ingest."""
    ahead = getattr(engine, "prepare", None)
    if not callable(ahead) or not getattr(engine, "binds_window", False):
        return
    texts = [t for t in _detection_texts(engine, catalog, queries, config, None,
                                         _subscriptions(inventory, subscriptions)).values()
             if isinstance(t, str)]
    with suppress(KeyError, KqlValueError):  # a query that cannot be built: analyze reports it
        texts.append(render_query(catalog.get("blast_radius"), queries["blast_radius"], config,
                                  None, ()))
    ahead(texts)


def _prefetch_blast(prefetch: _Prefetch, engine: QueryEngine, catalog: Catalog,
                    queries: Mapping[str, str], config: AnalyticsConfig, window: Window) -> None:
    """Start the blast-radius edge query (a query that cannot be built is left to
    :func:`_blast_radius` to report)."""
    try:
        text = render_query(catalog.get("blast_radius"), queries["blast_radius"], config,
                            _rendered_window(engine, window), ())
    except (KeyError, KqlValueError):
        return
    prefetch.start("blast_radius", partial(_blast_edges, engine, text, window))


def _blast_radius(engine: QueryEngine, catalog: Catalog, queries: Mapping[str, str],
                  config: AnalyticsConfig, window: Window, inventory: Inventory | None,
                  evaluator: NsgEvaluator | None, origins: list[Origin],
                  statuses: dict[str, _Status], prefetch: _Prefetch) -> list[Finding]:
    status = statuses["blast_radius"] = _Status()
    upstream = [statuses[d] for d in ("risky_region", "malicious_flow") if d in statuses]
    if any(s.status != QueryStatus.OK.value for s in upstream):
        status.notes["origins_incomplete"] = True
        status.notes["complete"] = False
    status.notes["origins"] = [{"ip": o.ip, "since": iso(o.since), "reasons": list(o.reasons)}
                               for o in origins]
    if not origins:
        return []
    detection = catalog.get("blast_radius")
    try:
        text = render_query(detection, queries[detection.id], config,
                            _rendered_window(engine, window), ())
    except (KeyError, KqlValueError) as err:
        status.status, status.error = QueryStatus.FAILED.value, f"cannot build query: {err}"
        return []
    edges: _Edges = prefetch.result("blast_radius", partial(_blast_edges, engine, text, window))
    if isinstance(edges, EdgeMoments):
        status.rows = edges.rows
        graph = TemporalGraph.from_moments(edges)
    else:
        status.status, status.error, status.rows = edges.status.value, edges.error, len(
            edges.rows)
        if edges.status is QueryStatus.FAILED:
            return []
        graph = TemporalGraph(edges_from_rows(edges.rows))
    out = []
    for origin in origins:
        reached = graph.reach(origin.ip, origin.since)
        policy: PolicyReach | None = None
        if evaluator is not None and config.policy_reach:
            policy = policy_reach(evaluator, origin.ip, config.policy_ports,
                                  config.max_policy_hosts)
        out.append(blast_radius_finding(origin, reached, policy, inventory))
    status.findings = len(out)
    return out


def _edge_moments(engine: QueryEngine, text: str, window: Window) -> EdgeMoments | None:
    """The edges already reduced per host pair by an engine that can (the local one), else
    None: the rows are then fetched and reduced here (also when the reduction fails, so that a
    failing query is reported exactly as for any detection)."""
    if not isinstance(engine, EdgeMomentSource):
        return None
    try:
        return engine.edge_moments(text, window)
    except Exception:  # the ordinary path below runs the query again and reports the error
        return None


def resolve_window(data_range: tuple[datetime, datetime] | None, since: datetime | None,
                   until: datetime | None) -> Window | None:
    """The data's own range, narrowed by ``since``/``until``; never "now". The end is exclusive
    (FlowStartTime < end), so the data's last moment is included by adding a millisecond."""
    from datetime import timedelta

    if data_range is None and (since is None or until is None):
        return None
    start = since if since is not None else data_range[0] if data_range else None
    end = until if until is not None else (data_range[1] + timedelta(milliseconds=1)
                                           if data_range else None)
    if start is None or end is None or end <= start:
        return None
    return Window(start, end)


def analyze_flow_logs(rows: Sequence[Any], flow_dir: Any, config_path: Any = None,
                      origins: Sequence[str] = ()) -> AnalysisReport:
    """Raw flow logs -> findings with the local engine, wired end to end (what the demo calls:
    ``analyze_flow_logs(rows, flow_dir)`` with the sample configuration by default).

    Raises ValueError when the configuration is invalid (the CLI reports those as exit 2)."""
    from pathlib import Path

    from shared.adapters.analytics_files import (
        SAMPLE_CONFIG,
        load_analytics_config,
        load_detections,
        load_service_tags,
    )
    from shared.adapters.country_db import lookup_countries
    from shared.adapters.duckdb_engine import LocalEngine
    from shared.analytics.enrichment import EnrichmentTables, tag_networks
    from shared.domain.normalize import normalize

    loaded = load_analytics_config(Path(config_path) if config_path else SAMPLE_CONFIG)
    if loaded.config is None:
        raise ValueError("; ".join(str(e) for e in loaded.errors))
    config = loaded.config
    tags = load_service_tags(loaded.path(config.service_tags) if config.service_tags else None)
    inventory = normalize(list(rows))
    catalog, queries = load_detections()
    with LocalEngine() as engine:
        prepare(engine, catalog, queries, config=config, inventory=inventory)
        ingest = engine.ingest_flow_logs(Path(flow_dir), EnrichmentTables.build(
            inventory, list(rows), config, tags), lookup_countries)
        window = resolve_window(engine.data_range(), None, None)
        if window is None:
            return AnalysisReport([], {"engine": engine.name, "complete": False,
                                       "error": "no flows to analyze",
                                       "input": ingest.as_dict()})
        report = analyze(engine, catalog, queries, config=config, window=window,
                         inventory=inventory, origins=origins,
                         evaluator=NsgEvaluator(inventory,
                                                service_tag_ranges=tag_networks(tags)))
    report.stats["input"] = ingest.as_dict()
    if not ingest.clean:
        report.stats["complete"] = False
    return report


def findings_table(report: AnalysisReport) -> str:
    """The findings as an aligned text table (severity, detection, summary)."""
    from shared.render.text import table

    if not report.findings:
        return "No findings." if report.complete else "No findings (analysis INCOMPLETE)."
    return table(["Severity", "Detection", "Summary"],
                 [[f.severity, f.detection, f.title] for f in report.findings])
