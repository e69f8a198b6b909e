"""The analytics timer: the detection catalog on the Traffic Analytics workspace, over the window
since the last complete run (watermark in storage), findings routed to alerts."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.runtime import get_runtime
from shared.services.scheduled_analytics import scheduled_analytics

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions 1.x is untyped here
log = logging.getLogger("zts.analytics")


@bp.function_name("analytics_timer")
@bp.timer_trigger(arg_name="timer", schedule="%ZTS_ANALYTICS_SCHEDULE%", run_on_startup=False)
def analytics_timer(timer: func.TimerRequest) -> None:
    del timer
    runtime = get_runtime()
    engine, catalog, queries, config = runtime.analytics()
    result = scheduled_analytics(engine, catalog, queries, config=config,
                                 inventory=runtime.stored_inventory(),
                                 watermarks=runtime.run_store(), now=datetime.now(UTC),
                                 router=runtime.alerts())
    log.info("analytics %s", json.dumps(result.summary(), sort_keys=True),
             extra={"custom_dimensions": result.summary()})
    for finding in result.report.findings:
        log.warning("%s", finding.title, extra={"custom_dimensions": finding.as_dict()})
    if not result.report.complete:
        log.error("analytics incomplete: the watermark stays; the next run covers this window "
                  "again", extra={"custom_dimensions": result.report.stats})
