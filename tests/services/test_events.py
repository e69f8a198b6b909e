"""Event-driven updates end to end: Event Grid event in -> ARM re-read (HTTPS fake) -> inventory
table and per-NSG queue requests (Azurite) -> reconcile -> NSG PUT out."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters.arm_nsg import ArmNsgGateway
from shared.adapters.arm_resources import ArmResourceReader
from shared.adapters.audit_store import TableAuditLog
from shared.adapters.nsg_queue import StorageNsgQueue, parse_message
from shared.adapters.table_store import TableInventoryStore
from shared.domain.normalize import normalize
from shared.local.azurite import Azurite
from shared.policy.apply import rows_after
from shared.policy.compiler import compile_policy
from shared.policy.impact import ImpactIndex
from shared.policy.planner import build_plan
from shared.services.enforcement import Reconciler
from shared.services.events import EventProcessor, poison_finding, reconcile_request
from tests.fakes.azure import FakeAzure
from tests.services.test_discovery_azure import CRED, ROWS, settings
from tests.services.test_enforcement_azure import POLICY, content

ZTS_APP = "0000aaaa-1111-2222-3333-444455556666"
SUB = ROWS[0]["subscriptionId"]


def in_line_rows() -> list[dict[str, Any]]:
    """The sample estate as it is once zts has applied the sample policy."""
    inventory = normalize(ROWS)
    plan = build_plan(compile_policy(POLICY, inventory), inventory, POLICY.ownership)
    return rows_after(ROWS, plan.nsgs, POLICY.ownership)


def event(subject: str, event_type: str = "Microsoft.Resources.ResourceWriteSuccess",
          operation: str = "", caller: str = "11112222-3333-4444-5555-666677778888",
          ) -> dict[str, Any]:
    provider_type = "/".join(subject.split("/")[6:8])
    verb = "delete" if "Delete" in event_type else "write"
    return {
        "id": str(uuid.uuid4()), "topic": f"/subscriptions/{subject.split('/')[2]}",
        "subject": subject, "eventType": event_type,
        "eventTime": "2026-11-22T01:30:12.1234567Z", "dataVersion": "2",
        "metadataVersion": "1",
        "data": {"operationName": operation or f"{provider_type}/{verb}", "status": "Succeeded",
                 "resourceUri": subject, "claims": {"appid": caller},
                 "subscriptionId": subject.split("/")[2]},
    }


@dataclass
class Rig:
    fake: FakeAzure
    processor: EventProcessor
    queue: StorageNsgQueue
    store: TableInventoryStore
    audit: TableAuditLog
    gateway: ArmNsgGateway
    rows: list[dict[str, Any]]

    def row(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(next(r for r in self.rows if r["name"] == name))

    def drain(self) -> list[str]:
        """Handle every queued request as the queue trigger would; the NSGs reconciled (a
        request covered by an earlier reconcile in the same drain is acknowledged only)."""
        handled = []
        reconciler = Reconciler(POLICY, self.gateway, self.audit, trigger="event",
                                actor="test")
        for text, message in self.queue.receive():
            nsg, _, _ = parse_message(text)
            report = reconcile_request(nsg, message.inserted_on, reconciler,
                                       lambda: normalize(self.store.load()), self.queue)
            self.queue.delete(message)
            if report is not None:
                handled.append(nsg.lower())
        return handled


@pytest.fixture
def rig(azurite: Azurite, table_name: str) -> Iterator[Rig]:
    rows = in_line_rows()
    suffix = uuid.uuid4().hex[:10]
    with FakeAzure(rows) as fake:
        store = TableInventoryStore.from_connection_string(azurite.connection_string, table_name)
        store.save(rows, "discovery-1")
        queue = StorageNsgQueue.from_connection_string(
            azurite.connection_string, f"q{suffix}", f"pending{suffix}")
        queue.create_queue()
        audit = TableAuditLog.from_connection_string(azurite.connection_string, f"a{suffix}")
        reader = ArmResourceReader(CRED, settings(fake))
        gateway = ArmNsgGateway(CRED, settings(fake))
        processor = EventProcessor(ImpactIndex(POLICY, normalize(rows)), reader, store, queue,
                                   own_callers={ZTS_APP})
        yield Rig(fake, processor, queue, store, audit, gateway, rows)
        for closable in (reader, gateway, queue, store, audit):
            closable.close()


def test_a_vm_joining_a_group_reaches_the_nsgs_within_one_event(rig: Rig) -> None:
    vm = rig.row("erp-db-01")  # a database server re-tagged as an SAP app server
    vm["tags"] = {**vm["tags"], "tier": "app"}
    rig.fake.put_resource(vm)
    started = time.perf_counter()
    outcome = rig.processor.handle(event(vm["id"]))
    assert outcome.status == "applied" and outcome.exists
    assert "sap" in outcome.groups and outcome.queued
    reconciled = rig.drain()
    latency = time.perf_counter() - started
    puts = [n.lower() for n, _ in rig.fake.put_bodies]
    assert puts and set(puts) <= set(reconciled)  # only NSGs whose rules change are written
    assert latency < 10, f"event in -> NSG PUT out took {latency:.2f} s"
    nic_ip = next(r for r in rig.rows if r["name"] == "erp-db-01-nic")["properties"][
        "ipConfigurations"][0]["properties"]["privateIPAddress"]
    written = json.dumps([b for _, b in rig.fake.put_bodies])
    assert nic_ip in written  # the new member's address is in the SAP rules now
    assert rig.store.get(vm["id"]) is not None


def test_a_burst_costs_one_reconcile_per_nsg_and_later_changes_still_count(
        rig: Rig) -> None:
    vm = rig.row("erp-db-01")
    vm["tags"] = {**vm["tags"], "tier": "app"}
    rig.fake.put_resource(vm)
    first = rig.processor.handle(event(vm["id"]))
    assert first.queued
    time.sleep(3)  # the burst's duplicates arrive a little later
    again = rig.processor.handle(event(vm["id"]))
    assert set(again.queued) <= set(first.queued)
    time.sleep(3)  # past the clock margin: the first reconcile starts after both were queued
    reconciled = rig.drain()
    assert sorted(reconciled) == sorted({n.lower() for n in first.queued})  # once per NSG
    vm["tags"] = {**vm["tags"], "tier": "db"}  # a change after those reconciles is not covered
    rig.fake.put_resource(vm)
    later = rig.processor.handle(event(vm["id"]))
    assert later.queued and rig.drain()


def test_a_late_write_for_a_deleted_nic_is_handled_as_the_delete(rig: Rig) -> None:
    nic = rig.row("erp-sap-01-nic")
    rig.fake.delete_resource(nic["id"])
    late = rig.processor.handle(event(nic["id"]))  # the write event arrives after the delete
    assert late.status == "applied" and late.exists is False and "sap" in late.groups
    assert rig.store.get(nic["id"]) is None
    delete = rig.processor.handle(event(nic["id"], "Microsoft.Resources.ResourceDeleteSuccess"))
    assert delete.exists is False and delete.groups == []  # idempotent: nothing left to move
    time.sleep(3)  # so the drain's first reconcile covers both requests
    rig.drain()
    for nsg_id, body in rig.fake.put_bodies:
        assert nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] \
            not in json.dumps(body), f"{nsg_id} still allows the deleted NIC's address"


def test_unwatched_and_malformed_events_are_counted_and_dropped(rig: Rig) -> None:
    storage = next(r for r in rig.rows if r["type"] == "microsoft.storage/storageaccounts")
    assert rig.processor.handle(event(storage["id"])).status == "ignored"
    assert rig.processor.handle({"id": "x", "eventType": "Microsoft.Resources."
                                 "ResourceWriteSuccess"}).status == "malformed"
    assert rig.processor.handle(["not", "an", "event"]).status == "malformed"
    assert rig.processor.handle(event("/subscriptions/x/not-an-arm-id")).status == "malformed"
    counters = rig.processor.counters
    assert (counters.ignored, counters.malformed, counters.applied) == (1, 3, 0)
    assert rig.fake.count("GET") == 0 and rig.queue.receive() == []


def test_hand_edit_of_an_owned_rule_is_reverted_and_zts_own_echo_is_not_requeued(
        rig: Rig) -> None:
    nsg = next(r for r in rig.rows if r["name"] == "nsg-payroll-app")
    rig.audit.set_written(nsg["id"], [r for r in rig.fake.nsg(nsg["id"])["properties"][
        "securityRules"] if r["name"].startswith("zts-")], "initial")
    before = content(rig.fake.nsg(nsg["id"]))
    body = rig.fake.nsg(nsg["id"])
    ours = next(r for r in body["properties"]["securityRules"]
                if r["name"].startswith("zts-") and r["properties"]["access"] == "Allow")
    ours["properties"]["sourceAddressPrefix"] = "*"
    ours["properties"].pop("sourceAddressPrefixes", None)
    ours["properties"].pop("sourceApplicationSecurityGroups", None)
    rig.fake.set_nsg(nsg["id"], body)
    rule_id = f"{nsg['id']}/securityRules/{ours['name']}"
    outcome = rig.processor.handle(event(rule_id, operation="Microsoft.Network/"
                                         "networkSecurityGroups/securityRules/write"))
    assert outcome.queued == [nsg["id"]]
    assert rig.drain() == [nsg["id"].lower()]
    assert content(rig.fake.nsg(nsg["id"])) == before  # reverted
    [entry] = rig.audit.entries(rig.audit.list_plans(1)[0]["id"])
    assert entry["result"] == "applied" and entry["message"] == "reverted drift"
    echo = rig.processor.handle(event(nsg["id"], caller=ZTS_APP))
    assert echo.queued == [] and echo.reason == "zts's own write"


def test_a_poisoned_request_becomes_a_finding() -> None:
    finding = poison_finding('{"nsg": "/subscriptions/s/resourceGroups/g/providers/'
                             'Microsoft.Network/networkSecurityGroups/nsg-x"}', 5)
    assert finding.detection == "reconcile_failed" and finding.severity == "high"
    assert "nsg-x" in finding.title and "5 attempts" in finding.title
    assert poison_finding("garbage", None).resource_id == "(unknown NSG)"
