"""Event Grid resource events in, per-NSG reconcile requests out (and their queue consumers).

Thin: decode the binding, call one service through the runtime, log the outcome as structured
fields. The event trigger raises only when zts could not re-read or store the resource, so Event
Grid retries it; ignored and malformed events are logged and dropped. The queue trigger raises
when the reconcile of its NSG fails, so the Functions host retries it and, after
``maxDequeueCount`` attempts (host.json), moves it to ``nsg-reconcile-poison``, whose trigger
turns it into a finding.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from shared.adapters.nsg_queue import POISON_QUEUE_NAME, QUEUE_NAME, parse_message
from shared.runtime import get_runtime
from shared.services.events import poison_finding, reconcile_request

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions 1.x is untyped here
log = logging.getLogger("zts.events")


def envelope(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema envelope of a trigger event (what the parser reads)."""
    return {"id": event.id, "topic": event.topic, "subject": event.subject,
            "eventType": event.event_type,
            "eventTime": event.event_time.isoformat() if event.event_time else None,
            "dataVersion": event.data_version, "data": event.get_json()}


@bp.function_name("resource_events")
@bp.event_grid_trigger(arg_name="event")
def resource_events(event: func.EventGridEvent) -> None:
    outcome = get_runtime().events().handle(envelope(event))
    log.info("event %s %s", outcome.status, outcome.target or outcome.reason,
             extra={"custom_dimensions": outcome.as_dict()})


@bp.function_name("nsg_reconcile")
@bp.queue_trigger(arg_name="message", queue_name=QUEUE_NAME, connection="AzureWebJobsStorage")
def nsg_reconcile(message: func.QueueMessage) -> None:
    text = message.get_body().decode("utf-8", errors="replace")
    try:
        nsg_id, reason, event_id = parse_message(text)
    except ValueError as error:
        log.error("dropping malformed reconcile request: %s", error,
                  extra={"custom_dimensions": {"message": text[:500]}})
        return  # retrying cannot repair it
    runtime = get_runtime()
    report = reconcile_request(nsg_id, message.insertion_time, runtime.reconciler("event"),
                               runtime.stored_inventory, runtime.queue(),
                               apply=runtime.settings.enforcement_enabled)
    if report is None:
        log.info("reconcile of %s already covered by a later one", nsg_id,
                 extra={"custom_dimensions": {"nsg": nsg_id, "event": event_id}})
        return
    log.info("reconciled %s: %s", nsg_id, json.dumps(report.summary(), sort_keys=True),
             extra={"custom_dimensions": {"nsg": nsg_id, "reason": reason, "event": event_id,
                                          "plan": report.plan_id, **report.summary()}})
    if not report.ok:
        problems = [o.message for o in report.outcomes if o.message] + report.refused
        raise RuntimeError(f"reconcile of {nsg_id} did not complete: {'; '.join(problems)}")


@bp.function_name("nsg_reconcile_poison")
@bp.queue_trigger(arg_name="message", queue_name=POISON_QUEUE_NAME,
                  connection="AzureWebJobsStorage")
def nsg_reconcile_poison(message: func.QueueMessage) -> None:
    finding = poison_finding(message.get_body().decode("utf-8", errors="replace"),
                             message.dequeue_count)
    log.error("%s", finding.title, extra={"custom_dimensions": finding.as_dict()})
    router = get_runtime().alerts()
    if router is not None:
        router.route([finding])
