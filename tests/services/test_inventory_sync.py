"""Mark-and-sweep persistence of discovery runs, on a real Azurite."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.table_store import TableInventoryStore
from shared.domain.normalize import normalize, rows_from_document
from shared.local.azurite import Azurite
from shared.services.inventory_sync import persist_run, subscriptions_in

DATA = Path(__file__).parent.parent / "data" / "arm"
PAYROLL = "5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f"
HUB = "0a9e8d7c-6b5a-4f3e-2d1c-0b9a8f7e6d5c"


def estate() -> list[Any]:
    rows = rows_from_document(json.loads((DATA / "resource_graph_rows.json").read_text()))
    rows += json.loads((DATA / "sdk_flattened.json").read_text())
    hub_asg = {
        "id": f"/subscriptions/{HUB}/resourceGroups/rg-hub-network/providers/Microsoft.Network/"
              "applicationSecurityGroups/Jump",
        "type": "microsoft.network/applicationsecuritygroups", "location": "westeurope",
    }
    web_app = {"id": f"/subscriptions/{PAYROLL}/resourceGroups/rg/providers/Microsoft.Web/sites/x",
               "type": "microsoft.web/sites"}
    return [*rows, hub_asg, web_app]


def store(azurite: Azurite, table_name: str) -> TableInventoryStore:
    return TableInventoryStore.from_connection_string(azurite.connection_string, table_name)


def test_first_run_persists_modeled_rows_and_round_trips(azurite: Azurite,
                                                         table_name: str) -> None:
    rows = estate()
    with store(azurite, table_name) as state:
        result = persist_run(rows, state, "run-1", subscriptions_in(rows[:1]))
        loaded = state.load()

    assert result.ok
    assert result.not_modeled == 1  # the web app
    assert result.save.written == len(rows) - 1
    assert normalize(loaded).counts() == normalize(rows).counts()


def test_second_run_sweeps_what_a_complete_subscription_no_longer_has(
    azurite: Azurite, table_name: str,
) -> None:
    rows = estate()
    gone = next(r for r in rows if r["id"].endswith("vm-app-02-nic"))
    with store(azurite, table_name) as state:
        persist_run(rows, state, "run-1", [PAYROLL, HUB])
        second = [r for r in rows if r is not gone]
        result = persist_run(second, state, "run-2", [PAYROLL, HUB])
        loaded = normalize(state.load())

    assert result.sweep.deleted == 1
    assert result.swept == (HUB, PAYROLL)
    assert not loaded.locate_ip("10.10.2.6")
    assert loaded.locate_ip("10.10.2.4")


def test_a_subscription_not_read_completely_keeps_its_rows(azurite: Azurite,
                                                           table_name: str) -> None:
    rows = estate()
    with store(azurite, table_name) as state:
        persist_run(rows, state, "run-1", [PAYROLL, HUB])
        # run 2 failed to list the hub subscription: it returns nothing from it
        second = [r for r in rows if HUB not in r["id"]]
        result = persist_run(second, state, "run-2", [PAYROLL])
        loaded = normalize(state.load())

    assert result.sweep.deleted == 0
    assert result.swept == (PAYROLL,)
    assert loaded.counts()["asgs"] == 2  # Web, and the hub's Jump ASG that run 2 never saw
    assert any("Jump" in a.name for a in loaded.asgs.values())


def test_malformed_rows_are_stored_and_reported_again_on_load(azurite: Azurite,
                                                              table_name: str) -> None:
    rows = copy.deepcopy(estate())
    nic = next(r for r in rows if r["id"].endswith("vm-web-01-nic"))
    nic["properties"]["macAddress"] = "not-a-mac"
    with store(azurite, table_name) as state:
        persist_run(rows, state, "run-1", [PAYROLL])
        reloaded = normalize(state.load())

    (skipped,) = reloaded.report.skipped
    assert skipped.resource_id == nic["id"]
    assert skipped.field == "macAddress"


def test_a_resource_stored_by_an_event_during_the_run_survives_its_sweep(
    azurite: Azurite, table_name: str,
) -> None:
    rows = estate()
    new_nic = copy.deepcopy(next(r for r in rows if r["id"].endswith("vm-app-02-nic")))
    new_nic["id"] = new_nic["id"].replace("vm-app-02-nic", "vm-app-03-nic")
    new_nic["ip_configurations"][0]["private_ip_address"] = "10.10.2.7"
    with store(azurite, table_name) as state:
        persist_run(rows, state, "run-1", [PAYROLL])
        run_2_started = datetime.now(UTC)
        state.save([new_nic], "event-1")  # the event handler, while run 2 is still listing
        result = persist_run(rows, state, "run-2", [PAYROLL], started_at=run_2_started)
        loaded = normalize(state.load())

    assert result.sweep.deleted == 0
    assert loaded.locate_ip("10.10.2.7")
