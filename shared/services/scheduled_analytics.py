"""The analytics timer: run the detection catalog over the window since the last watermark.

* The window starts where the last *complete* run ended (or ``first_window`` back from now the
  first time, and never more than ``max_window`` back, so a long outage does not become one huge
  query) and ends now; the Log Analytics engine pads its query timespan for ingestion delay.
* The watermark advances only when every detection ran to completion: a partial or failed query
  leaves it, so the next run covers the same time again instead of reporting it as clean.
* Findings go to the alert router (deduplicated there); resolution is only considered for the
  detections that completed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.analytics.catalog import Catalog
from shared.analytics.config import AnalyticsConfig
from shared.analytics.query import QueryEngine, Window
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory
from shared.services.analytics import AnalysisReport, analyze

WATERMARK = "analytics"
DEFAULT_FIRST_WINDOW = timedelta(hours=1)
DEFAULT_MAX_WINDOW = timedelta(days=1)


class Watermarks(Protocol):
    def watermark(self, name: str) -> datetime | None: ...

    def set_watermark(self, name: str, value: datetime) -> None: ...


class Router(Protocol):
    def run(self, findings: Any, detections_checked: Any = None) -> Any: ...


@dataclass
class ScheduledResult:
    window: Window
    report: AnalysisReport
    advanced: bool  # the watermark moved to the window's end
    checked: list[str]  # detections that completed

    def summary(self) -> dict[str, Any]:
        return {"window": {"start": self.window.start.isoformat(),
                           "end": self.window.end.isoformat()},
                "advanced": self.advanced, "checked": self.checked,
                "findings": len(self.report.findings), "complete": self.report.complete}


def scheduled_analytics(engine: QueryEngine, catalog: Catalog, queries: Mapping[str, str], *,
                        config: AnalyticsConfig, inventory: Inventory | None,
                        watermarks: Watermarks, now: datetime,
                        router: Router | None = None,
                        first_window: timedelta = DEFAULT_FIRST_WINDOW,
                        max_window: timedelta = DEFAULT_MAX_WINDOW,
                        on_findings: Callable[[list[Finding]], None] | None = None,
                        ) -> ScheduledResult:
    last = watermarks.watermark(WATERMARK)
    start = last if last is not None else now - first_window
    start = max(start, now - max_window)
    window = Window(start, now) if start < now else Window(now - first_window, now)
    report = analyze(engine, catalog, queries, config=config, window=window,
                     inventory=inventory)
    detections = report.stats.get("detections", {})
    checked = sorted(name for name, status in detections.items()
                     if status.get("status") == "ok" and status.get("complete", True))
    advanced = report.complete
    if advanced:
        watermarks.set_watermark(WATERMARK, window.end)
    if on_findings is not None:
        on_findings(report.findings)
    if router is not None:
        router.run(report.findings, checked)
    return ScheduledResult(window, report, advanced, checked)
