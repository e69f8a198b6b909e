"""Full runs: the discovery timer, ``POST /api/resync`` and ``GET /api/runs/{id}``.

``POST /api/resync`` (function key; Entra ID through App Service authentication in front of it)
accepts an optional JSON body ``{"subscriptions": [...], "managementGroup": "...",
"dryRun": true}``, records a queued run and answers 202 with its id; the ``zts-resync`` queue
trigger does the work, so the request returns at once and a long run is retried by the host if an
instance dies. A run already holding the lease makes the request answer 409 with that run's id,
and a worker that finds the lease taken marks its run ``skipped``: two full runs never overlap.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from shared.adapters.json_queue import RESYNC_QUEUE
from shared.runtime import Runtime, get_runtime
from shared.services.full_run import full_run, parse_resync_body

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions 1.x is untyped here
log = logging.getLogger("zts.runs")


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None,
          ) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, sort_keys=True), status_code=status,
                             mimetype="application/json", headers=headers)


@bp.function_name("resync")
@bp.route(route="resync", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def resync(req: func.HttpRequest) -> func.HttpResponse:
    parsed = parse_resync_body(req.get_body())
    if isinstance(parsed, str):
        return _json(400, {"error": parsed})
    subscriptions, group, dry_run = parsed
    runtime = get_runtime()
    holder = runtime.run_store().holder()
    if holder is not None:
        return _json(409, {"error": "a full run is in progress", "runId": holder})
    run_id = new_run_id()
    scope = {"subscriptions": list(subscriptions), "managementGroup": group}
    runtime.run_store().create(run_id, "resync", scope, dry_run=dry_run)
    runtime.resync_queue().send({"runId": run_id, **scope, "dryRun": dry_run})
    log.info("resync %s queued", run_id, extra={"custom_dimensions": {"run": run_id, **scope}})
    return _json(202, {"runId": run_id, "status": "queued", "statusUrl": f"/api/runs/{run_id}"},
                 headers={"Location": f"/api/runs/{run_id}"})


@bp.function_name("runs")
@bp.route(route="runs/{run_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def runs(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params.get("run_id", "")
    if not run_id or not all(c.isalnum() or c in "-_" for c in run_id) or len(run_id) > 64:
        return _json(400, {"error": "invalid run id"})
    found = get_runtime().run_store().get(run_id)
    if found is None:
        return _json(404, {"error": f"no run {run_id}"})
    return _json(200, found)


@bp.function_name("resync_worker")
@bp.queue_trigger(arg_name="message", queue_name=RESYNC_QUEUE, connection="AzureWebJobsStorage")
def resync_worker(message: func.QueueMessage) -> None:
    try:
        body = json.loads(message.get_body())
        run_id = str(body["runId"])
    except (ValueError, KeyError, TypeError) as error:
        log.error("dropping malformed resync request: %s", error)
        return
    subs = tuple(str(s) for s in body.get("subscriptions") or ())
    execute(get_runtime(), run_id, "resync", subs, str(body.get("managementGroup") or ""),
            dry_run=bool(body.get("dryRun")))


@bp.function_name("discovery_timer")
@bp.timer_trigger(arg_name="timer", schedule="%ZTS_DISCOVERY_SCHEDULE%", run_on_startup=False)
def discovery_timer(timer: func.TimerRequest) -> None:
    runtime = get_runtime()
    run_id = new_run_id()
    runtime.run_store().create(run_id, "timer", {}, dry_run=False)
    if timer.past_due:
        log.warning("discovery timer is past due; running now")
    execute(runtime, run_id, "timer", (), "", dry_run=False)


def execute(runtime: Runtime, run_id: str, trigger: str, subscriptions: tuple[str, ...],
            group: str, *, dry_run: bool) -> None:
    """Run under the lease; the run row says what happened (and why, when it did not)."""
    store = runtime.run_store()
    holder = store.acquire(run_id)
    if holder is not None:
        store.update(run_id, "skipped", error=f"run {holder} holds the lease")
        return
    store.update(run_id, "running")
    try:
        primary, fallback = runtime.sources()
        apply = runtime.settings.enforcement_enabled and not dry_run
        result = full_run(run_id, runtime.scope(subscriptions, group), primary, fallback,
                          runtime.inventory_store(), runtime.reconciler(trigger), apply=apply)
        store.update(run_id, "succeeded" if result.ok else "failed", summary=result.summary,
                     error=result.error)
        if result.inventory is not None:
            runtime.forget_event_index()
            findings = result.findings
            router = runtime.alerts()
            if router is not None:  # drift findings; "drift" was checked on every changed NSG
                routed = router.run(findings, ["drift"])
                log.info("alerts: %s", json.dumps(routed.counts(), sort_keys=True))
        log.info("run %s %s", run_id, "succeeded" if result.ok else "failed",
                 extra={"custom_dimensions": {"run": run_id, "trigger": trigger,
                                              "error": result.error}})
    except Exception as error:  # report it on the run, then let the host see it
        store.update(run_id, "failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        store.release(run_id)
