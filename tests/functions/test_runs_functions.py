"""Resync end to end with real azure.functions objects: HTTP request -> queued run -> discovery
through the HTTPS fake -> plan -> NSG PUT -> run status; the lease; bad requests; the timer."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueServiceClient

from shared.adapters.json_queue import RESYNC_QUEUE
from shared.local.azurite import Azurite
from shared.runtime import Runtime, set_runtime
from shared.sample.estate import ESTATE_JSON_PATH
from shared.settings import Settings, SettingsError
from tests.fakes.azure import FakeAzure
from tests.fakes.notify import FakeNotify
from tests.functions.indexed import BINDINGS, FUNCTIONS
from tests.services.test_discovery_azure import CRED, ROWS


@pytest.fixture
def runtime(azurite: Azurite, table_name: str) -> Iterator[tuple[Runtime, FakeAzure]]:
    with FakeAzure(ROWS) as fake:
        settings = Settings(
            storage_connection_string=azurite.connection_string, inventory_table=table_name,
            table_prefix=f"r{uuid.uuid4().hex[:10]}",
            policy_path=ESTATE_JSON_PATH.parent / "policy.yaml", enforcement_enabled=True,
            arm_endpoint=fake.url, ca_bundle=fake.ca_path, lro_poll_seconds="0")
        built = Runtime(settings, credential=CRED)
        set_runtime(built)
        yield built, fake
        set_runtime(None)
        with QueueServiceClient.from_connection_string(azurite.connection_string) as queues, \
                contextlib.suppress(ResourceNotFoundError):
            queues.delete_queue(RESYNC_QUEUE)


def post(body: bytes) -> func.HttpResponse:
    response: func.HttpResponse = FUNCTIONS["resync"](
        func.HttpRequest(method="POST", url="/api/resync", body=body))
    return response


def status(run_id: str) -> dict[str, object]:
    response = FUNCTIONS["runs"](func.HttpRequest(method="GET", url=f"/api/runs/{run_id}",
                                                  body=b"", route_params={"run_id": run_id}))
    assert response.status_code == 200, response.get_body()
    result: dict[str, object] = json.loads(response.get_body())
    return result


def work(runtime: Runtime) -> int:
    messages = runtime.resync_queue().receive()
    for text, message in messages:
        FUNCTIONS["resync_worker"](QueueMessage(id=message.id, body=text.encode(),
                                                dequeue_count=1))
        runtime.resync_queue().delete(message)
    return len(messages)


def test_resync_end_to_end(runtime: tuple[Runtime, FakeAzure]) -> None:
    built, fake = runtime
    response = post(b"{}")
    assert response.status_code == 202
    accepted = json.loads(response.get_body())
    assert response.headers["Location"] == f"/api/runs/{accepted['runId']}"
    assert status(accepted["runId"])["status"] == "queued"
    assert work(built) == 1
    done = status(accepted["runId"])
    assert done["status"] == "succeeded", done
    summary = done["summary"]
    assert isinstance(summary, dict)
    assert summary["discovery"]["complete"] == summary["discovery"]["subscriptions"] > 0
    assert summary["reconcile"]["writes"] == fake.count("PUT") > 0
    assert summary["discovery"]["requests"]["resource-graph"] == fake.count(
        "POST", "Microsoft.ResourceGraph")
    assert len(built.inventory_store().load()) > 0  # persisted with mark-and-sweep
    again = post(b'{"dryRun": true}')
    assert again.status_code == 202
    work(built)
    second = status(json.loads(again.get_body())["runId"])
    assert second["status"] == "succeeded" and second["dryRun"] is True
    assert fake.count("PUT") == summary["reconcile"]["writes"]  # dry run, and nothing to do


def test_a_run_holding_the_lease_blocks_another(runtime: tuple[Runtime, FakeAzure]) -> None:
    built, _ = runtime
    assert built.run_store().acquire("20261122T000000Z-aaaaaaaa") is None
    busy = post(b"")
    assert busy.status_code == 409
    assert json.loads(busy.get_body())["runId"] == "20261122T000000Z-aaaaaaaa"
    assert built.run_store().acquire("someone-else") == "20261122T000000Z-aaaaaaaa"
    built.run_store().release("20261122T000000Z-aaaaaaaa")
    assert post(b"").status_code == 202


@pytest.mark.parametrize(("body", "message"), [
    (b"{nope", "not JSON"),
    (b"[1]", "JSON object"),
    (b'{"subscriptions": "abc"}', "list of subscription ids"),
    (b'{"dryRun": "yes", "colour": 1}', "unknown field(s): colour"),
    (b'{"subscriptions": ["a"], "managementGroup": "mg"}', "not both"),
])
def test_bad_requests_get_a_clear_400(runtime: tuple[Runtime, FakeAzure], body: bytes,
                                      message: str) -> None:
    response = post(body)
    assert response.status_code == 400
    assert message in json.loads(response.get_body())["error"]


def test_unknown_and_invalid_run_ids(runtime: tuple[Runtime, FakeAzure]) -> None:
    missing = FUNCTIONS["runs"](func.HttpRequest(method="GET", url="/api/runs/x", body=b"",
                                                 route_params={"run_id": "20991231T000000Z-0"}))
    assert missing.status_code == 404
    hostile = FUNCTIONS["runs"](func.HttpRequest(method="GET", url="/api/runs/x", body=b"",
                                                 route_params={"run_id": "a' or 1 eq 1"}))
    assert hostile.status_code == 400


def test_timer_runs_under_the_lease(runtime: tuple[Runtime, FakeAzure]) -> None:
    built, fake = runtime
    FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))
    assert fake.count("PUT") > 0 and built.run_store().holder() is None  # released


def test_run_bindings() -> None:
    [timer] = BINDINGS["discovery_timer"]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%ZTS_DISCOVERY_SCHEDULE%"
    assert timer["runOnStartup"] is False
    for name in ("resync", "runs"):
        http = next(b for b in BINDINGS[name] if b["type"] == "httpTrigger")
        assert http["authLevel"] == "FUNCTION"


def widen_by_hand(fake: FakeAzure) -> tuple[str, dict[str, Any]]:
    """Drift: someone opens one of zts's allow rules on nsg-payroll-app to every port."""
    nsg_id = next(r["id"] for r in ROWS if r["name"] == "nsg-payroll-app")
    body = fake.nsg(nsg_id)
    ours = next(r for r in body["properties"]["securityRules"]
                if r["name"].startswith("zts-") and r["properties"]["access"] == "Allow")
    ours["properties"]["destinationPortRange"] = "*"
    ours["properties"].pop("destinationPortRanges", None)
    fake.set_nsg(nsg_id, body)
    return nsg_id, body


def test_a_full_run_alerts_on_drift_once(azurite: Azurite, table_name: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text("version: 1\nchannels:\n  teams: {enabled: true}\nroutes:\n"
                      "  - {detections: [drift], teams: true}\n", encoding="utf-8")
    with FakeAzure(ROWS) as fake, FakeNotify() as notify:
        monkeypatch.setenv("ZTS_TEAMS_WEBHOOK_URL", notify.webhook_url)
        monkeypatch.setenv("ZTS_CA_BUNDLE", notify.ca_path)
        monkeypatch.setenv("ZTS_ALERT_TABLE", f"al{uuid.uuid4().hex[:10]}")
        settings = Settings(
            storage_connection_string=azurite.connection_string, inventory_table=table_name,
            table_prefix=f"d{uuid.uuid4().hex[:10]}", alert_config_path=config,
            policy_path=ESTATE_JSON_PATH.parent / "policy.yaml", enforcement_enabled=True,
            arm_endpoint=fake.url, ca_bundle=fake.ca_path, lro_poll_seconds="0")
        built = Runtime(settings, credential=CRED)
        set_runtime(built)
        try:
            FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))  # first sync: no drift
            assert notify.count("POST", "/workflows/") == 0
            nsg_id, body = widen_by_hand(fake)
            FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))  # drift: reverted
            assert notify.count("POST", "/workflows/") == 1
            card = json.dumps(notify.requests[-1].body)
            assert "payroll" in card and "drift" in card.lower()
            fake.set_nsg(nsg_id, body)  # the same hand edit again, within the window
            FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))
            assert notify.count("POST", "/workflows/") == 1  # deduplicated
        finally:
            set_runtime(None)


def test_recipients_alone_send_drift_by_email(azurite: Azurite, table_name: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ZTS_EMAIL_RECIPIENTS without an alert file: every finding goes to them by email."""
    with FakeAzure(ROWS) as fake, FakeNotify() as notify:
        monkeypatch.delenv("ZTS_ACS_ENDPOINT", raising=False)
        monkeypatch.setenv("ZTS_ACS_CONNECTION_STRING", notify.acs_connection_string)
        monkeypatch.setenv("ZTS_EMAIL_SENDER", "zts@contoso.com")
        monkeypatch.setenv("ZTS_LRO_POLL_SECONDS", "0.01")
        monkeypatch.setenv("ZTS_CA_BUNDLE", notify.ca_path)
        monkeypatch.setenv("ZTS_ALERT_TABLE", f"al{uuid.uuid4().hex[:10]}")
        settings = Settings.from_env({
            "ZTS_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "ZTS_INVENTORY_TABLE": table_name, "ZTS_TABLE_PREFIX": f"e{uuid.uuid4().hex[:10]}",
            "ZTS_POLICY_PATH": str(ESTATE_JSON_PATH.parent / "policy.yaml"),
            "ZTS_ENFORCEMENT_ENABLED": "true", "ZTS_ARM_ENDPOINT": fake.url,
            "ZTS_CA_BUNDLE": fake.ca_path, "ZTS_LRO_POLL_SECONDS": "0",
            "ZTS_EMAIL_RECIPIENTS": "soc@contoso.com, net@contoso.com"})
        assert settings.email_recipients == ("soc@contoso.com", "net@contoso.com")
        built = Runtime(settings, credential=CRED)
        set_runtime(built)
        try:
            FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))  # first sync: no drift
            assert notify.emails == []
            nsg_id, body = widen_by_hand(fake)
            FUNCTIONS["discovery_timer"](TimerRequest(past_due=False))  # drift: reverted
            (email,) = notify.emails
            assert sorted(r["address"] for r in email["recipients"]["to"]) == [
                "net@contoso.com", "soc@contoso.com"]
            assert email["senderAddress"] == "zts@contoso.com"
            assert "drift" in json.dumps(email["content"]).lower()
        finally:
            set_runtime(None)


def test_email_alerts_without_communication_services_are_a_settings_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZTS_ACS_ENDPOINT", "ZTS_ACS_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    built = Runtime(Settings(storage_connection_string="UseDevelopmentStorage=true",
                             email_recipients=("soc@contoso.com",)), credential=CRED)
    with pytest.raises(SettingsError, match="neither ZTS_ACS_ENDPOINT nor"):
        built.alerts()
    bad = Runtime(Settings(email_recipients=("soc@contoso.com", "oops")), credential=CRED)
    with pytest.raises(SettingsError, match="ZTS_EMAIL_RECIPIENTS address 'oops'"):
        bad.alerts()
    assert Runtime(Settings(), credential=CRED).alerts() is None
