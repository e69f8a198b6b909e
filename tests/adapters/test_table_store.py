"""The Table Storage inventory store against a real Azurite (one per session, a table per test)."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.data.tables import TableClient

from shared.adapters.table_keys import encode_key
from shared.adapters.table_store import (
    BODY_CHUNK_BYTES,
    MAX_BATCH_BYTES,
    MAX_ENTITY_BYTES,
    TENANT_PARTITION,
    CorruptEntity,
    TableInventoryStore,
    _build_row,
    partition_key_for,
    row_key_for,
)
from shared.errors import ConcurrencyConflict, ResourceNotStorable
from shared.local.azurite import Azurite

DATA = Path(__file__).resolve().parents[1] / "data" / "arm"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SUB_A = "5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f"
SUB_B = "0a1b2c3d-0000-4000-8000-00000000000b"
NETWORK = "providers/Microsoft.Network"
MANAGEMENT_GROUPS = "/providers/Microsoft.Management/managementGroups"
RANDOM_HEX = random.Random(0).randbytes(1_300_000).hex()  # barely compressible filler


# -- fixtures and builders -------------------------------------------------------------------


@pytest.fixture
def store(azurite: Azurite, table_name: str) -> Iterator[TableInventoryStore]:
    with TableInventoryStore.from_connection_string(
        azurite.connection_string, table_name, clock=lambda: NOW
    ) as instance:
        yield instance


@pytest.fixture
def table(azurite: Azurite, table_name: str, store: TableInventoryStore) -> Iterator[TableClient]:
    """Raw access to the store's table, to check the entity layout the store promises."""
    store.load()  # creates the table
    with TableClient.from_connection_string(azurite.connection_string, table_name) as client:
        yield client


def nsg(subscription: str, name: str, *, rg: str = "rg-net", rules: int = 0) -> dict[str, Any]:
    """An NSG as ARM returns it, with ``rules`` realistic, varied security rules."""
    rng = random.Random(f"{subscription}/{name}")
    nsg_id = (
        f"/subscriptions/{subscription}/resourceGroups/{rg}/{NETWORK}/networkSecurityGroups/{name}"
    )

    def octet() -> int:
        return rng.randrange(256)

    security_rules = [
        {
            "name": f"zts-allow-{i:04d}",
            "id": f"{nsg_id}/securityRules/zts-allow-{i:04d}",
            "etag": f'W/"{uuid.UUID(int=rng.getrandbits(128))}"',
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "description": f"zts: group-{octet()} -> group-{octet()}",
                "protocol": rng.choice(["Tcp", "Udp", "*"]),
                "sourcePortRange": "*",
                "destinationPortRange": str(rng.randint(1, 65535)),
                "sourceAddressPrefixes": [f"10.{octet()}.{octet()}.0/24" for _ in range(3)],
                "destinationAddressPrefix": f"10.{octet()}.{octet()}.{octet()}/32",
                "access": "Allow",
                "priority": 100 + i,
                "direction": rng.choice(["Inbound", "Outbound"]),
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "destinationAddressPrefixes": [],
            },
        }
        for i in range(rules)
    ]
    return {
        "id": nsg_id,
        "name": name,
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": "westeurope",
        "etag": f'W/"{uuid.UUID(int=rng.getrandbits(128))}"',
        "tags": {"env": "prod"},
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": str(uuid.UUID(int=rng.getrandbits(128))),
            "securityRules": security_rules,
            "defaultSecurityRules": [],
        },
    }


def bulky(subscription: str, name: str, random_bytes: int) -> dict[str, Any]:
    """A resource whose body barely compresses: ``random_bytes`` random bytes, hex-encoded."""
    resource = nsg(subscription, name)
    resource["tags"] = {"blob": RANDOM_HEX[: 2 * random_bytes]}
    return resource


def raw_rows() -> list[dict[str, Any]]:
    """Resource Graph rows (nested ``properties``) plus ``az``/SDK-flattened rows."""
    graph = json.loads((DATA / "resource_graph_rows.json").read_text(encoding="utf-8"))["data"]
    flattened = json.loads((DATA / "sdk_flattened.json").read_text(encoding="utf-8"))
    return [*graph, *flattened]


def by_id(resources: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["id"]).lower(): r for r in resources}


def wire_bytes(resource: Mapping[str, Any]) -> int | None:
    """The store's own size estimate (computed locally), or None when it refuses the resource."""
    try:
        return _build_row(resource, str(resource["id"]), "run-1", NOW).wire_bytes
    except ResourceNotStorable:
        return None


def largest(build: Callable[[int], dict[str, Any]], limit: int) -> int:
    """The largest n (a multiple of 64) whose ``build(n)`` is storable and at most ``limit``
    bytes on the wire. The size is almost linear in n: interpolate, then step to the edge."""
    step = 64
    low, high = 600_000, 640_000
    low_size, high_size = wire_bytes(build(low)), wire_bytes(build(high))
    assert low_size is not None and high_size is not None
    n = low + (limit - low_size) * (high - low) // (high_size - low_size) // step * step

    def fits(candidate: int) -> bool:
        size = wire_bytes(build(candidate))
        return size is not None and size <= limit

    while not fits(n):
        n -= step
    while fits(n + step):
        n += step
    return n


# -- round trip and layout -------------------------------------------------------------------


def test_round_trip_of_nested_and_flattened_resources(store: TableInventoryStore) -> None:
    resources = raw_rows()
    report = store.save(resources, "run-1")

    assert report.ok, report
    assert report.written == len(resources)
    loaded = store.load()
    assert len(loaded) == len(resources)
    originals = by_id(resources)
    for resource in loaded:  # byte-for-byte, key order included
        original = originals[str(resource["id"]).lower()]
        assert json.dumps(resource) == json.dumps(original)
    order = [(partition_key_for(r["id"]), row_key_for(r["id"])) for r in loaded]
    assert order == sorted(order)


def test_entity_layout(store: TableInventoryStore, table: TableClient) -> None:
    resource = nsg(SUB_A.upper(), "NSG-Web", rg="RG-Net")
    store.save([resource], "run-7")

    entity = table.get_entity(SUB_A, encode_key(resource["id"].lower()))
    assert entity["ArmId"] == resource["id"]
    assert entity["Type"] == "microsoft.network/networksecuritygroups"
    assert entity["Name"] == "NSG-Web"
    assert entity["RunId"] == "run-7"
    assert entity["SeenAt"] == NOW
    assert entity["BodyFormat"] == "json+gzip/1"
    assert entity["BodyParts"] == 1
    assert isinstance(entity["Body0"], bytes)


def test_subscription_row_and_tenant_level_ids(store: TableInventoryStore) -> None:
    subscription = {"id": f"/subscriptions/{SUB_B}", "name": "B", "type": "subscriptions"}
    group = {"id": f"{MANAGEMENT_GROUPS}/mg-root", "name": "mg-root"}
    store.save([subscription, group, nsg(SUB_A, "nsg-1")], "run-1")

    assert partition_key_for(subscription["id"]) == SUB_B
    assert partition_key_for(group["id"]) == TENANT_PARTITION
    assert [r["id"] for r in store.load([SUB_B.upper()])] == [subscription["id"]]
    assert [r["id"] for r in store.load([TENANT_PARTITION])] == [group["id"]]
    assert len(store.load([SUB_A, SUB_B])) == 2
    assert store.load(["ffffffff-0000-0000-0000-000000000000"]) == []


def test_more_than_100_rows_in_one_partition_and_several_partitions(
    store: TableInventoryStore,
) -> None:
    resources = [nsg(SUB_A, f"nsg-{i:03d}") for i in range(250)]
    resources += [nsg(SUB_B, f"nsg-{i:03d}") for i in range(30)]
    resources += [{"id": f"{MANAGEMENT_GROUPS}/mg{i}"} for i in range(3)]

    report = store.save(resources, "run-1")

    assert report.ok, report
    assert report.written == 283
    assert dict(report.batches) == {SUB_A: 3, SUB_B: 1, TENANT_PARTITION: 1}
    assert len(store.load()) == 283
    assert len(store.load([SUB_A])) == 250


def test_nsg_with_1000_rules_is_split_into_body_parts(
    store: TableInventoryStore, table: TableClient
) -> None:
    big = nsg(SUB_A, "nsg-big", rules=1000)
    assert len(json.dumps(big)) > 500_000  # far beyond one 64 KiB string property

    report = store.save([big], "run-1")

    assert report.ok, report
    entity = table.get_entity(SUB_A, row_key_for(big["id"]))
    parts = [entity[f"Body{i}"] for i in range(entity["BodyParts"])]
    assert len(parts) > 1
    assert all(0 < len(part) <= BODY_CHUNK_BYTES for part in parts)
    assert store.load() == [big]


# -- sizes: what does not fit is reported, what fits is accepted -------------------------------


def test_oversize_resource_is_reported_not_crashed(store: TableInventoryStore) -> None:
    small, huge = nsg(SUB_A, "nsg-1"), bulky(SUB_A, "nsg-huge", 1_200_000)

    report = store.save([small, huge, nsg(SUB_B, "nsg-2")], "run-1")

    assert report.written == 2
    assert [error.arm_id for error in report.errors] == [huge["id"]]
    assert "entity limit" in report.errors[0].reason
    assert report.incomplete_partitions == {SUB_A}
    assert sorted(r["name"] for r in store.load()) == ["nsg-1", "nsg-2"]


def test_entity_at_the_size_limit_is_accepted_by_azurite(store: TableInventoryStore) -> None:
    """The store's size check never lets through what the emulator rejects, and is not much
    stricter than it: the largest storable body is close to 1 MiB on the wire."""
    limit = largest(lambda n: bulky(SUB_A, "edge", n), MAX_ENTITY_BYTES)
    edge, over = bulky(SUB_A, "edge", limit), bulky(SUB_A, "edge", limit + 64)
    assert wire_bytes(over) is None

    report = store.save([edge], "run-1")

    assert report.ok, report
    assert store.load() == [edge]
    assert (wire_bytes(edge) or 0) > MAX_ENTITY_BYTES - 1024  # really at the edge
    assert store.save([over], "run-2").errors[0].arm_id == over["id"]


def test_transactions_respect_the_4_mib_payload_limit(store: TableInventoryStore) -> None:
    """Four entities just under a quarter of the batch budget share one 4 MiB transaction (the
    emulator accepts it); a fifth goes into a second one."""
    per_row = MAX_BATCH_BYTES // 4 - 2048  # 2048: the store's allowance per operation
    size = largest(lambda n: bulky(SUB_A, "nsg-0", n), per_row)
    resources = [bulky(SUB_A, f"nsg-{i}", size) for i in range(5)]
    assert per_row - 1024 < (wire_bytes(resources[-1]) or 0) <= per_row  # names: same length

    report = store.save(resources, "run-1")

    assert report.ok, report
    assert report.written == 5
    assert dict(report.batches) == {SUB_A: 2}


def test_unstorable_items_are_reported(store: TableInventoryStore) -> None:
    not_json = {"id": f"/subscriptions/{SUB_A}/x", "when": datetime(2025, 1, 1, tzinfo=UTC)}
    not_finite = {"id": f"/subscriptions/{SUB_A}/y", "score": float("nan")}
    items: list[Any] = [{"name": "no id"}, "not an object", not_json, not_finite, nsg(SUB_A, "ok")]

    report = store.save(items, "run-1")

    assert report.written == 1
    reasons = {error.arm_id: error.reason for error in report.errors}
    assert reasons["<item 0>"] == "no 'id'"
    assert reasons["<item 1>"] == "not a JSON object"
    assert reasons[not_json["id"]].startswith("not JSON-serializable")
    assert reasons[not_finite["id"]].startswith("not JSON-serializable")


# -- identity: duplicates and case ------------------------------------------------------------


def test_duplicates_in_one_save_last_one_wins(store: TableInventoryStore) -> None:
    first = nsg(SUB_A, "nsg-web")
    second = {**first, "id": first["id"].upper(), "tags": {"v": "2"}}
    third = {**first, "id": first["id"].lower(), "tags": {"v": "3"}}

    report = store.save([first, second, nsg(SUB_A, "other"), third], "run-1")

    assert report.ok, report
    assert (report.written, report.duplicates) == (2, 2)
    stored = store.get(first["id"])
    assert stored is not None
    assert stored.resource == third
    assert stored.arm_id == third["id"]


def test_case_variants_of_an_id_map_to_one_row(store: TableInventoryStore) -> None:
    resource = nsg(SUB_A, "NSG-Web", rg="RG-Net")
    store.save([resource], "run-1")
    shouted = {**resource, "id": resource["id"].upper()}
    store.save([shouted], "run-2")

    assert len(store.load()) == 1
    for variant in (resource["id"], resource["id"].lower(), resource["id"].upper() + "/"):
        stored = store.get(variant)
        assert stored is not None
        assert (stored.arm_id, stored.run_id) == (shouted["id"], "run-2")


def test_prefix_range_query_finds_a_resource_group(
    store: TableInventoryStore, table: TableClient
) -> None:
    """Keys keep prefixes, so one range query lists a resource group (and nothing else)."""
    inside = [nsg(SUB_A, f"nsg-{i}", rg="rg-app") for i in range(3)]
    outside = [nsg(SUB_A, "nsg-x", rg="rg-app2"), nsg(SUB_A, "nsg-y", rg="rg-ap")]
    store.save([*inside, *outside], "run-1")

    low = encode_key(f"/subscriptions/{SUB_A}/resourcegroups/rg-app/")
    high = low[:-1] + chr(ord(low[-1]) + 1)
    rows = table.query_entities(
        "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
        parameters={"pk": SUB_A, "low": low, "high": high},
    )
    assert sorted(row["Name"] for row in rows) == ["nsg-0", "nsg-1", "nsg-2"]


# -- optimistic concurrency ---------------------------------------------------------------------


def test_etag_conflict_between_two_writers(azurite: Azurite, table_name: str) -> None:
    resource = nsg(SUB_A, "nsg-web")
    with (
        TableInventoryStore.from_connection_string(azurite.connection_string, table_name) as one,
        TableInventoryStore.from_connection_string(azurite.connection_string, table_name) as two,
    ):
        one.save([resource], "run-1")
        seen_by_one, seen_by_two = one.get(resource["id"]), two.get(resource["id"])
        assert seen_by_one is not None
        assert seen_by_two is not None
        assert seen_by_one.etag == seen_by_two.etag

        new_etag = one.replace_if_match(
            resource["id"], {**resource, "tags": {"by": "one"}}, "event-1", seen_by_one.etag
        )
        with pytest.raises(ConcurrencyConflict, match="HTTP 412"):
            two.replace_if_match(
                resource["id"], {**resource, "tags": {"by": "two"}}, "event-2", seen_by_two.etag
            )

        reread = two.get(resource["id"])
        assert reread is not None
        assert (reread.etag, reread.resource["tags"]) == (new_etag, {"by": "one"})
        two.replace_if_match(resource["id"], {**resource, "tags": {"by": "two"}}, "e", new_etag)
        final = one.get(resource["id"])
        assert final is not None
        assert final.resource["tags"] == {"by": "two"}


def test_replace_of_a_deleted_row_is_a_conflict(store: TableInventoryStore) -> None:
    resource = nsg(SUB_A, "nsg-web")
    store.save([resource], "run-1")
    stored = store.get(resource["id"])
    assert stored is not None
    store.sweep("run-2", [SUB_A])

    with pytest.raises(ConcurrencyConflict, match="deleted"):
        store.replace_if_match(resource["id"], resource, "run-3", stored.etag)


def test_replace_refuses_a_body_with_another_id(store: TableInventoryStore) -> None:
    with pytest.raises(ResourceNotStorable, match="does not match"):
        store.replace_if_match(nsg(SUB_A, "a")["id"], nsg(SUB_A, "b"), "run-1", 'W/"x"')


def test_get_of_an_unknown_id_is_none(store: TableInventoryStore) -> None:
    assert store.get(nsg(SUB_A, "missing")["id"]) is None



def test_every_write_changes_the_generation_and_loads_never_see_it(
    azurite: Azurite, table_name: str
) -> None:
    """The token a cached reader compares: each writing method (even one whose write fails)
    leaves a token no reader has seen, and the token's row is not an inventory row."""
    with (
        TableInventoryStore.from_connection_string(azurite.connection_string, table_name) as one,
        TableInventoryStore.from_connection_string(azurite.connection_string, table_name) as two,
    ):
        assert one.generation() == ""
        seen = {""}

        def changed() -> None:
            token = two.generation()  # another instance sees it
            assert token not in seen
            seen.add(token)

        web, db = nsg(SUB_A, "nsg-web"), nsg(SUB_B, "nsg-db")
        one.save([web, db], "run-1")
        changed()
        stored = one.get(web["id"])
        assert stored is not None
        one.replace_if_match(web["id"], {**web, "tags": {"x": "1"}}, "event-1", stored.etag)
        changed()
        with pytest.raises(ConcurrencyConflict):
            one.replace_if_match(web["id"], web, "event-2", stored.etag)  # stale ETag
        changed()
        one.delete(db["id"])
        changed()
        assert one.get(db["id"]) is None
        one.delete(db["id"])  # already gone: no error, and still a new token
        changed()
        one.sweep("run-2", [SUB_A])
        changed()
        assert one.load() == [] and one.load([SUB_A, SUB_B]) == []
        token = one.generation()
        assert one.generation() == two.generation() == token  # reading changes nothing


# -- mark and sweep -----------------------------------------------------------------------------


def test_sweep_deletes_only_stale_rows_of_the_listed_partitions(
    store: TableInventoryStore,
) -> None:
    a_rows = [nsg(SUB_A, f"nsg-{i:03d}") for i in range(120)]
    b_rows = [nsg(SUB_B, f"nsg-{i}") for i in range(5)]
    tenant = {"id": f"{MANAGEMENT_GROUPS}/mg"}
    store.save([*a_rows, *b_rows, tenant], "run-1")
    store.save([*a_rows[:10], *b_rows[:1]], "run-2")  # run-2 saw fewer resources

    report = store.sweep("run-2", [SUB_A.upper()])  # B's discovery "failed": not listed

    assert report.deleted == 110
    assert dict(report.deleted_per_partition) == {SUB_A: 110}
    assert (report.kept_changed, report.failures) == (0, ())
    assert len(store.load([SUB_A])) == 10
    assert len(store.load([SUB_B])) == 5
    assert len(store.load([TENANT_PARTITION])) == 1

    assert store.sweep("run-2", [SUB_B, TENANT_PARTITION]).deleted == 5
    assert [r["id"] for r in store.load([SUB_B])] == [b_rows[0]["id"]]
    assert store.sweep("run-2", []).deleted == 0


def test_sweep_keeps_a_row_rewritten_after_it_was_read(azurite: Azurite, table_name: str) -> None:
    """A concurrent writer refreshes a stale row between the sweep's read and its delete: the
    conditional delete fails with 412 and the fresh row survives."""
    connection = azurite.connection_string
    rows = [nsg(SUB_A, f"nsg-{i}") for i in range(4)]

    class RacingStore(TableInventoryStore):
        def _stale_rows(self, partition: str, run_id: str, seen_before: Any) -> list[Any]:
            stale = super()._stale_rows(partition, run_id, seen_before)
            with TableInventoryStore.from_connection_string(connection, table_name) as writer:
                writer.save([rows[2]], "event-9")
            return stale

    with RacingStore.from_connection_string(connection, table_name) as store:
        store.save(rows, "run-1")
        report = store.sweep("run-2", [SUB_A])

        assert (report.deleted, report.kept_changed, report.failures) == (3, 1, ())
        assert [r["id"] for r in store.load()] == [rows[2]["id"]]


def test_sweep_spares_rows_written_after_the_run_started(azurite: Azurite, table_name: str) -> None:
    """An event handler stores a fresh copy under its own run id after the discovery run
    started; a sweep limited to rows seen before the run start keeps it."""
    now = [datetime(2025, 3, 2, 8, 0, tzinfo=UTC)]
    old, fresh, gone = nsg(SUB_A, "old"), nsg(SUB_A, "fresh"), nsg(SUB_A, "gone")
    with TableInventoryStore.from_connection_string(
        azurite.connection_string, table_name, clock=lambda: now[0]
    ) as store:
        store.save([old, fresh, gone], "run-1")  # 08:00
        run_start = now[0] = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
        now[0] = datetime(2025, 3, 2, 9, 5, tzinfo=UTC)
        store.save([fresh], "event-1")  # an event handler, while run-2 is listing
        now[0] = datetime(2025, 3, 2, 9, 10, tzinfo=UTC)
        store.save([old], "run-2")  # run-2 did not see "fresh" (listed before it was created)

        report = store.sweep("run-2", [SUB_A], seen_before=run_start)

        assert report.deleted == 1
        assert sorted(r["name"] for r in store.load()) == ["fresh", "old"]
        assert store.sweep("run-2", [SUB_A]).deleted == 1  # without the guard, it is lost


def test_failed_batch_is_reported_and_other_batches_go_through(
    azurite: Azurite, table_name: str
) -> None:
    """The service rejects one transaction (here: an entity with an invalid key slipped in);
    its partition is reported with the reason and ids, other transactions are written."""

    class PoisonedStore(TableInventoryStore):
        def _submit_upserts(self, partition: str, batch: Sequence[Any]) -> Any:
            if partition == SUB_B:
                batch[1].entity["RowKey"] = "bad/key"
            return super()._submit_upserts(partition, batch)

    resources = [nsg(SUB_A, f"nsg-{i}") for i in range(3)] + [
        nsg(SUB_B, f"nsg-{i}") for i in range(3)
    ]
    with PoisonedStore.from_connection_string(azurite.connection_string, table_name) as store:
        report = store.save(resources, "run-1")

        assert report.written == 3
        (failure,) = report.failed_batches
        assert failure.partition == SUB_B
        assert len(failure.arm_ids) == 3
        assert "HTTP 400" in failure.reason
        assert report.incomplete_partitions == {SUB_B}
        assert {partition_key_for(r["id"]) for r in store.load()} == {SUB_A}


# -- guards and construction --------------------------------------------------------------------


def test_empty_run_id_is_refused(store: TableInventoryStore) -> None:
    with pytest.raises(ValueError, match="run_id"):
        store.save([nsg(SUB_A, "a")], " ")
    with pytest.raises(ValueError, match="run_id"):
        store.sweep("", [SUB_A])


def test_corrupt_row_is_an_error_not_a_wrong_answer(
    store: TableInventoryStore, table: TableClient
) -> None:
    resource = nsg(SUB_A, "nsg-web")
    store.save([resource], "run-1")
    entity = table.get_entity(SUB_A, row_key_for(resource["id"]))
    entity["BodyParts"] = 2
    table.update_entity(entity)

    with pytest.raises(CorruptEntity, match="body part 1"):
        store.load()


class _StaticToken:
    """A TokenCredential stand-in: construction must not need a token (no I/O before use)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 2_000_000_000)


def test_from_endpoint_takes_a_token_credential_and_does_no_io() -> None:
    store = TableInventoryStore.from_endpoint(
        "https://account.table.core.windows.net", _StaticToken(), "Inventory"
    )
    assert store.table_name == "Inventory"
    store.close()
