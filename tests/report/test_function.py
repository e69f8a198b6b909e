"""GET /api/report with real azure.functions objects against Azurite: the page from the stored
inventory, the configured policy and the latest stored plan (with its drift findings); the
security headers; 503 when storage is not configured."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from functions.report_http import bp
from shared.domain.findings import Finding
from shared.local.azurite import Azurite
from shared.policy.compiler import compile_policy
from shared.policy.planner import build_plan
from shared.report.render import content_security_policy
from shared.runtime import Runtime, set_runtime
from shared.services.inventory_sync import persist_run, subscriptions_in
from shared.settings import Settings
from tests.report.conftest import POLICY_PATH, Sample

NSG = ("/subscriptions/2b83c301-a66a-58a1-adf8-b238446096d2/resourceGroups/rg-payroll-network/"
       "providers/Microsoft.Network/networkSecurityGroups/nsg-payroll-web")


def _report_function() -> Callable[[func.HttpRequest], func.HttpResponse]:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    (function,) = [f for f in app.get_functions() if f.get_function_name() == "report"]
    bindings = json.loads(function.get_function_json())["bindings"]
    trigger = next(b for b in bindings if b["type"] == "httpTrigger")
    assert (trigger["authLevel"], trigger["methods"], trigger["route"]) == (
        "FUNCTION", ["GET"], "report")
    user: Callable[[func.HttpRequest], func.HttpResponse] = function.get_user_function()
    return user


REPORT = _report_function()


def get() -> func.HttpResponse:
    return REPORT(func.HttpRequest(method="GET", url="/api/report", body=b""))


def page_data(response: func.HttpResponse) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="zts-data">(.*?)</script>',
                      response.get_body().decode())
    assert found is not None
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


@pytest.fixture
def runtime(azurite: Azurite, table_name: str, sample: Sample) -> Iterator[Runtime]:
    settings = Settings(storage_connection_string=azurite.connection_string,
                        inventory_table=table_name, table_prefix=f"r{uuid.uuid4().hex[:10]}",
                        policy_path=POLICY_PATH)
    built = Runtime(settings)
    result = persist_run(sample.rows, built.inventory_store(), "report-test",
                         subscriptions_in(sample.rows))
    assert result.ok
    set_runtime(built)
    yield built
    set_runtime(None)


def test_page_from_stored_state_with_the_latest_plan(runtime: Runtime, sample: Sample) -> None:
    response = get()
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == (
        content_security_policy() + "; frame-ancestors 'none'")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    computed = page_data(response)
    assert len([n for n in computed["nodes"] if n["kind"] == "group"]) == 9
    assert computed["plan"]["source"].startswith("Computed")  # nothing stored yet
    assert computed["meta"]["hasFlows"] is False
    assert {e["status"] for e in computed["edges"]} == {"nodata"}

    plan = build_plan(compile_policy(sample.policy, sample.inventory), sample.inventory,
                      sample.policy.ownership)
    drift = Finding("drift", "high", "hand edits to zts rules on nsg-payroll-web", NSG,
                    datetime(2026, 11, 22, 1, 0, tzinfo=UTC), {"changed": ["zts-x-in"]},
                    ("nsg",))
    for plan_id, hour in (("20261122T000000Z-00000000", 0), ("20261122T010000Z-1a2b3c4d", 1)):
        runtime.audit().save_plan(plan_id, {
            "id": plan_id, "createdAt": f"2026-11-22T0{hour}:00:00+00:00", "trigger": "timer",
            "plan": plan.as_dict(), "findings": [drift.as_dict()] if hour else []})
    stored = page_data(get())
    assert stored["plan"]["id"] == "20261122T010000Z-1a2b3c4d"
    assert stored["plan"]["source"] == "Latest stored plan (trigger timer)"
    assert stored["plan"]["totals"] == {"add": 28, "change": 0, "remove": 0}
    (finding,) = stored["findings"]
    assert (finding["detection"], finding["resource"], finding["fingerprint"]) == (
        "drift", NSG, drift.fingerprint)
    assert finding["portal"].endswith("/nsg-payroll-web")


def test_without_storage_settings_the_function_says_so() -> None:
    set_runtime(Runtime(Settings()))
    try:
        response = get()
    finally:
        set_runtime(None)
    assert response.status_code == 503
    assert "ZTS_STORAGE_TABLE_ENDPOINT" in json.loads(response.get_body())["error"]
