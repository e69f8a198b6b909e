"""Plans, audit entries and last-written rules in Table Storage (Azurite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.audit_store import TableAuditLog
from shared.domain.audit import AuditEntry
from shared.local.azurite import Azurite

NSG = ("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/"
       "Microsoft.Network/networkSecurityGroups/Nsg-Web")


@pytest.fixture
def audit(azurite: Azurite) -> Iterator[TableAuditLog]:
    prefix = f"a{uuid.uuid4().hex[:12]}"
    with TableAuditLog.from_connection_string(azurite.connection_string, prefix) as log:
        yield log
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        for table in service.list_tables():
            if table.name.startswith(prefix):
                service.delete_table(table.name)


def _rule(i: int) -> dict[str, object]:
    return {"name": f"zts-r{i:04d}-in", "properties": {
        "priority": 1000 + i, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefixes": [f"10.{i // 256}.{i % 256}.0/24"], "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "443",
        "description": f"zts policy rule r{i}: a -> b"}}


def test_plan_round_trip_and_listing(audit: TableAuditLog) -> None:
    document = {"id": "20261122T010000Z-0a1b2c3d", "trigger": "cli", "actor": "cli:alice",
                "summary": {"writes": 2}, "plan": {"nsgs": [{"id": NSG, "add": [_rule(1)]}]}}
    audit.save_plan(document["id"], document)  # type: ignore[arg-type]
    audit.save_plan("20261122T020000Z-ffffffff", {"id": "later", "summary": {"writes": 0}})
    assert audit.get_plan("20261122T010000Z-0a1b2c3d") == document
    assert audit.get_plan("20991231T000000Z-00000000") is None
    listed = audit.list_plans()
    assert [p["id"] for p in listed] == ["20261122T020000Z-ffffffff",
                                         "20261122T010000Z-0a1b2c3d"]
    assert listed[1]["summary"] == {"writes": 2} and listed[1]["actor"] == "cli:alice"


def test_plan_id_is_validated(audit: TableAuditLog) -> None:
    with pytest.raises(ValueError, match="plan id"):
        audit.get_plan("x' or PartitionKey ne '")


def test_audit_entries_keep_large_before_and_after(audit: TableAuditLog) -> None:
    before = [_rule(i) for i in range(1000)]  # a full NSG: far over the 64 KiB property limit
    after = [_rule(i) for i in range(500)]
    at = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    audit.record(AuditEntry("p1", NSG, 1, "conflict", "timer", "mi:zts", at, before, after,
                            "etag changed"))
    audit.record(AuditEntry("p1", NSG, 2, "applied", "timer", "mi:zts", at, before, after))
    entries = audit.entries("p1")
    assert [(e["attempt"], e["result"]) for e in entries] == [(1, "conflict"), (2, "applied")]
    assert entries[0]["before"] == before and entries[0]["after"] == after
    assert entries[0]["message"] == "etag changed" and entries[0]["nsg"] == NSG


def test_last_written_is_per_nsg_case_insensitive(audit: TableAuditLog) -> None:
    assert audit.last_written(NSG) is None
    audit.set_written(NSG, [_rule(1), _rule(2)], "p1")
    assert audit.last_written(NSG.lower()) == [_rule(1), _rule(2)]
    audit.set_written(NSG.upper().replace("/SUBSCRIPTIONS", "/subscriptions"), [], "p2")
    assert audit.last_written(NSG) == []
