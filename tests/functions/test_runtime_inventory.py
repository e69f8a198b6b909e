"""The instance's shared inventory: one table scan reused while nothing was written, a new load
after any write through the store (from any instance) or after the maximum age."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.adapters.table_store import TableInventoryStore
from shared.domain.arm_id import key
from shared.local.azurite import Azurite
from shared.runtime import INVENTORY_MAX_AGE_SECONDS, Runtime
from shared.settings import Settings
from tests.services.test_discovery_azure import CRED
from tests.services.test_events import in_line_rows


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def writer(azurite: Azurite, table_name: str) -> Iterator[TableInventoryStore]:
    """Another instance's store on the same table (e.g. the event handler's)."""
    with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                    table_name) as store:
        store.save(in_line_rows(), "discovery-1")
        yield store


def runtime_on(azurite: Azurite, table_name: str, clock: Clock) -> Runtime:
    settings = Settings(storage_connection_string=azurite.connection_string,
                        inventory_table=table_name, table_prefix=f"r{uuid.uuid4().hex[:10]}")
    return Runtime(settings, credential=CRED, monotonic=clock)


def test_the_load_is_reused_until_the_store_is_written(
        azurite: Azurite, table_name: str, writer: TableInventoryStore) -> None:
    clock = Clock()
    runtime = runtime_on(azurite, table_name, clock)
    first = runtime.stored_inventory()
    assert first.vms and runtime.stored_inventory() is first

    vm = next(r for r in in_line_rows() if r["type"].lower() == "microsoft.compute/virtualmachines")
    writer.save([{**vm, "tags": {**vm.get("tags", {}), "zts-test": "moved"}}], "event-1")
    second = runtime.stored_inventory()
    assert second is not first
    assert ("zts-test", "moved") in second.vms[key(vm["id"])].tags
    assert ("zts-test", "moved") not in first.vms[key(vm["id"])].tags
    assert runtime.stored_inventory() is second

    writer.delete(vm["id"])
    third = runtime.stored_inventory()
    assert third is not second and len(third.vms) == len(second.vms) - 1


def test_the_load_is_renewed_after_the_maximum_age(
        azurite: Azurite, table_name: str, writer: TableInventoryStore) -> None:
    clock = Clock()
    runtime = runtime_on(azurite, table_name, clock)
    first = runtime.stored_inventory()
    clock.now += INVENTORY_MAX_AGE_SECONDS - 1
    assert runtime.stored_inventory() is first
    clock.now += 1
    assert runtime.stored_inventory() is not first
