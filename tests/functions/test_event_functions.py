"""The event-driven functions, called with real azure.functions objects, against the HTTPS fake
(ARM) and Azurite (inventory table, pending markers, the nsg-reconcile queue): an Event Grid
event in, an NSG PUT out, latency measured."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage  # what the worker builds (has dequeue_count)
from azure.storage.queue import QueueServiceClient

from shared.adapters.nsg_queue import QUEUE_NAME
from shared.adapters.table_store import TableInventoryStore
from shared.local.azurite import Azurite
from shared.runtime import Runtime, set_runtime
from shared.sample.estate import ESTATE_JSON_PATH
from shared.settings import Settings, SettingsError
from tests.fakes.azure import FakeAzure
from tests.functions.indexed import BINDINGS, FUNCTIONS
from tests.services.test_discovery_azure import CRED
from tests.services.test_events import ZTS_APP, event, in_line_rows


@pytest.fixture
def runtime(azurite: Azurite, table_name: str) -> Iterator[tuple[Runtime, FakeAzure]]:
    rows = in_line_rows()
    with FakeAzure(rows) as fake:
        with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                        table_name) as store:
            store.save(rows, "discovery-1")
        settings = Settings(
            storage_connection_string=azurite.connection_string, inventory_table=table_name,
            table_prefix=f"f{uuid.uuid4().hex[:10]}",
            policy_path=ESTATE_JSON_PATH.parent / "policy.yaml", enforcement_enabled=True,
            own_client_id=ZTS_APP, arm_endpoint=fake.url, ca_bundle=fake.ca_path,
            lro_poll_seconds="0")
        built = Runtime(settings, credential=CRED)
        set_runtime(built)
        yield built, fake
        set_runtime(None)
        with QueueServiceClient.from_connection_string(azurite.connection_string) as queues, \
                contextlib.suppress(ResourceNotFoundError):
            queues.delete_queue(QUEUE_NAME)


def grid_event(body: dict[str, object]) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=str(body["id"]), data=body["data"], topic=str(body["topic"]),
        subject=str(body["subject"]), event_type=str(body["eventType"]),
        event_time=datetime(2026, 11, 22, 1, 30, tzinfo=UTC), data_version="2")


def test_bindings_are_what_the_host_expects() -> None:
    [trigger] = BINDINGS["resource_events"]
    assert trigger["type"] == "eventGridTrigger"
    for name, queue in (("nsg_reconcile", "nsg-reconcile"),
                        ("nsg_reconcile_poison", "nsg-reconcile-poison")):
        [binding] = BINDINGS[name]
        assert binding["type"] == "queueTrigger" and binding["queueName"] == queue
        assert binding["connection"] == "AzureWebJobsStorage"  # identity-based in Azure


def test_event_in_nsg_put_out(runtime: tuple[Runtime, FakeAzure]) -> None:
    built, fake = runtime
    vm = next(r for r in in_line_rows() if r["name"] == "erp-db-01")
    vm["tags"] = {**vm["tags"], "tier": "app"}
    fake.put_resource(vm)
    started = time.perf_counter()
    FUNCTIONS["resource_events"](grid_event(event(vm["id"])))
    messages = built.queue().receive()
    assert messages, "the event queued no reconcile request"
    for text, message in messages:
        FUNCTIONS["nsg_reconcile"](QueueMessage(id=message.id, body=text.encode(),
                                                     dequeue_count=1))
        built.queue().delete(message)
    latency = time.perf_counter() - started
    assert fake.put_bodies, "no NSG was written"
    assert latency < 10, f"event in -> NSG PUT out took {latency:.2f} s"
    ip = next(r for r in in_line_rows() if r["name"] == "erp-db-01-nic")["properties"][
        "ipConfigurations"][0]["properties"]["privateIPAddress"]
    assert ip in json.dumps([body for _, body in fake.put_bodies])
    print(f"event in -> NSG PUT out: {latency * 1000:.0f} ms "  # shown with pytest -s
          f"({len(messages)} request(s), {len(fake.put_bodies)} PUT(s))")


def test_malformed_queue_messages_are_dropped_and_poison_becomes_a_finding(
        runtime: tuple[Runtime, FakeAzure], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zts.events")
    FUNCTIONS["nsg_reconcile"](QueueMessage(id="m1", body=b"{not json", dequeue_count=1))
    assert "dropping malformed reconcile request" in caplog.text
    nsg = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/x"
    FUNCTIONS["nsg_reconcile_poison"](QueueMessage(
        id="m2", body=json.dumps({"nsg": nsg}).encode(), dequeue_count=5))
    record = next(r for r in caplog.records if "could not reconcile" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert record.custom_dimensions["detection"] == "reconcile_failed"  # type: ignore[attr-defined]


def test_settings_problems_are_listed_together(tmp_path: Path) -> None:
    settings = Settings.from_env({"ZTS_ENFORCEMENT_ENABLED": "maybe",
                                  "ZTS_TABLE_PREFIX": "zts-x",
                                  "ZTS_POLICY_PATH": str(tmp_path / "missing.yaml")})
    with pytest.raises(SettingsError) as raised:
        settings.require("storage", "queue", "policy")
    problems = raised.value.problems
    assert len(problems) == 5
    assert any("ZTS_ENFORCEMENT_ENABLED" in p for p in problems)
    assert any("ZTS_STORAGE_QUEUE_ENDPOINT" in p for p in problems)
    assert any("is not a file" in p for p in problems)
