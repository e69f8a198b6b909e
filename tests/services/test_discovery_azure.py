"""Discovery through the real SDK clients against the HTTPS fake: Resource Graph paging and
throttling, the ARM fallback, partial failures and what mark-and-sweep may remove."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.arm_listing import ArmListingSource
from shared.adapters.azure_clients import ArmSettings
from shared.adapters.resource_graph import ResourceGraphSource
from shared.adapters.table_store import TableInventoryStore
from shared.cli import main
from shared.domain.discovery import DiscoveryScope
from shared.domain.normalize import normalize
from shared.errors import SourceUnavailable
from shared.local.azurite import Azurite
from shared.sample.estate import ESTATE_JSON_PATH
from shared.services.discovery import discover, discover_and_persist
from tests.fakes.azure import FakeAzure

ROWS: list[dict[str, Any]] = json.loads(ESTATE_JSON_PATH.read_text())["data"]
SUBSCRIPTIONS = sorted({r["subscriptionId"].lower() for r in ROWS})
MODELED = ("vnets", "subnets", "nics", "asgs", "nsgs", "private_endpoints", "resource_groups",
           "subscriptions")


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


CRED = StaticCredential()


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with FakeAzure(ROWS, arm_page_size=5) as running:
        yield running


def settings(fake: FakeAzure, retries: int = 2) -> ArmSettings:
    return ArmSettings(arm_url=fake.url, ca_bundle=fake.ca_path, retry_total=retries,
                       retry_backoff_factor=0, polling_interval=0)


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    found = normalize(rows).counts()
    return {k: found[k] for k in MODELED}


def test_resource_graph_reads_the_whole_estate_in_pages(fake: FakeAzure) -> None:
    graph = ResourceGraphSource(CRED, settings(fake), page_size=10)
    result = discover(DiscoveryScope(), graph)
    assert result.ok and sorted(result.complete) == SUBSCRIPTIONS
    assert counts(result.rows) == counts(ROWS)
    assert normalize(result.rows).report.skipped == ()
    assert "payroll-prod" in {n.lower() for n in result.subscriptions.values()}
    # pages, not resources: ceil(rows / 10) per query, plus the subscription listing
    resources = sum(1 for r in ROWS if not r["type"].startswith("microsoft.resources/")
                    and r["type"] in {
                        "microsoft.network/virtualnetworks", "microsoft.network/networkinterfaces",
                        "microsoft.network/networksecuritygroups",
                        "microsoft.network/applicationsecuritygroups",
                        "microsoft.network/privateendpoints", "microsoft.network/publicipaddresses",
                        "microsoft.compute/virtualmachines"})
    groups = sum(1 for r in ROWS if r["type"] == "microsoft.resources/subscriptions/resourcegroups")
    assert graph.requests == 1 + -(-resources // 10) + -(-groups // 10)
    assert fake.count("POST", "Microsoft.ResourceGraph") == graph.requests
    assert fake.count("GET", "/providers/Microsoft.Network/") == 0  # no per-resource calls


def test_throttled_mid_paging_still_completes(fake: FakeAzure) -> None:
    fake.add_fault("POST", "Microsoft.ResourceGraph", 429, skip=3, times=2,
                   headers={"Retry-After": "0"})
    graph = ResourceGraphSource(CRED, settings(fake, retries=3), page_size=10)
    result = discover(DiscoveryScope(), graph)
    assert result.ok and counts(result.rows) == counts(ROWS)
    assert fake.count("POST", "Microsoft.ResourceGraph") == graph.requests + 2


def test_quota_headers_make_it_wait_for_the_window_instead_of_hitting_429() -> None:
    with FakeAzure(ROWS, arg_quota=3, arg_quota_window_s=0.4) as fake:
        graph = ResourceGraphSource(CRED, settings(fake, retries=0), page_size=10)
        result = discover(DiscoveryScope(), graph)
        assert result.ok and counts(result.rows) == counts(ROWS)
        assert graph.quota_waits, "quota-remaining 0 must make the reader wait"
        assert all(0 < w <= 1.5 for w in graph.quota_waits)
        statuses = [r for r in fake.requests if r.path.endswith("/resources")]
        assert len(statuses) == graph.requests  # never a refused (429) query


def test_resource_graph_denied_falls_back_to_arm_listing(fake: FakeAzure) -> None:
    fake.add_fault("POST", "Microsoft.ResourceGraph", 403, times=100)
    graph = ResourceGraphSource(CRED, settings(fake), page_size=10)
    arm = ArmListingSource(CRED, settings(fake), concurrency=3)
    result = discover(DiscoveryScope(), graph, arm)
    assert result.ok and sorted(result.sources["arm"]) == SUBSCRIPTIONS
    assert "resource-graph unavailable" in result.notes[0]
    assert counts(result.rows) == counts(ROWS)
    assert normalize(result.rows).report.skipped == ()
    assert result.requests["arm"] == arm.requests > 0


def test_a_failed_resource_graph_batch_is_retried_per_subscription(fake: FakeAzure) -> None:
    fake.add_fault("POST", "Microsoft.ResourceGraph", 500, skip=1, times=100)  # after listing
    graph = ResourceGraphSource(CRED, settings(fake, retries=1), page_size=10)
    arm = ArmListingSource(CRED, settings(fake))
    result = discover(DiscoveryScope(), graph, arm)
    assert result.ok and sorted(result.sources["arm"]) == SUBSCRIPTIONS
    assert any("retried with arm" in n for n in result.notes)
    assert counts(result.rows) == counts(ROWS)


def test_one_subscription_failing_is_reported_and_never_swept(fake: FakeAzure,
                                                              azurite: Azurite,
                                                              table_name: str) -> None:
    broken = SUBSCRIPTIONS[1]
    with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                    table_name) as store:
        arm = ArmListingSource(CRED, settings(fake, retries=0))
        first, persisted = discover_and_persist(DiscoveryScope(), arm, None, store, "run-1")
        assert first.ok and persisted.ok
        before = len(store.load([broken]))
        fake.add_fault("GET", f"/subscriptions/{broken}/providers/Microsoft.Network/"
                              "networkInterfaces", 500, times=100)
        second, persisted = discover_and_persist(DiscoveryScope(), arm, None, store, "run-2")
        assert not second.ok and list(second.failed) == [broken]
        assert "network interfaces" in second.failed[broken] and "500" in second.failed[broken]
        assert broken not in persisted.swept
        assert sorted(persisted.swept) == [s for s in SUBSCRIPTIONS if s != broken]
        assert len(store.load([broken])) == before  # stale beats missing


def test_explicit_subscriptions_not_visible_are_reported(fake: FakeAzure) -> None:
    ghost = "99999999-9999-9999-9999-999999999999"
    graph = ResourceGraphSource(CRED, settings(fake))
    result = discover(DiscoveryScope((SUBSCRIPTIONS[0], ghost)), graph)
    assert result.complete == [SUBSCRIPTIONS[0]]
    assert "not visible" in result.failed[ghost]
    assert {r["subscriptionId"].lower() for r in result.rows} == {SUBSCRIPTIONS[0]}


def test_no_source_at_all_is_an_error_not_an_empty_estate(fake: FakeAzure) -> None:
    fake.add_fault("POST", "Microsoft.ResourceGraph", 403, times=10)
    with pytest.raises(SourceUnavailable, match="403"):
        discover(DiscoveryScope(), ResourceGraphSource(CRED, settings(fake)))


def test_cli_discover_uses_the_managed_identity_and_writes_a_snapshot(
        fake: FakeAzure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                 "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_ARM_ENDPOINT", fake.url)
    monkeypatch.setenv("ZTS_CA_BUNDLE", fake.ca_path)
    out_file = tmp_path / "snapshot.json"
    import io

    out, err = io.StringIO(), io.StringIO()
    code = main(["discover", "--out", str(out_file), "--json"], out, err)
    assert code == 0, err.getvalue()
    summary = json.loads(out.getvalue())
    assert summary["complete"] == len(SUBSCRIPTIONS) and summary["failed"] == {}
    assert counts(json.loads(out_file.read_text())["data"]) == counts(ROWS)
    assert fake.count("GET", "/msi/token") >= 1


def test_management_group_scope_reads_only_its_subscriptions() -> None:
    inside = SUBSCRIPTIONS[:2]
    with FakeAzure(ROWS, management_groups={"mg-prod": inside}) as fake:
        graph = ResourceGraphSource(CRED, settings(fake))
        result = discover(DiscoveryScope(management_group="mg-prod"), graph)
        assert result.ok and sorted(result.complete) == inside
        assert {r["subscriptionId"].lower() for r in result.rows} == set(inside)
        listing = next(r for r in fake.requests if r.path.endswith("/resources"))
        assert listing.body["managementGroups"] == ["mg-prod"]
        with pytest.raises(SourceUnavailable, match="management-group scope needs Resource"):
            discover(DiscoveryScope(management_group="mg-prod"),
                     ArmListingSource(CRED, settings(fake)))


def test_cli_persist_sweeps_complete_subscriptions(fake: FakeAzure, azurite: Azurite,
                                                   table_name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_ARM_ENDPOINT", fake.url)
    monkeypatch.setenv("ZTS_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("ZTS_INVENTORY_TABLE", table_name)
    import io

    out, err = io.StringIO(), io.StringIO()
    assert main(["discover", "--persist", "--json"], out, err) == 0, err.getvalue()
    summary = json.loads(out.getvalue())
    assert summary["persist"] == {"ok": True, "swept": len(SUBSCRIPTIONS), "notSwept": []}
    with TableInventoryStore.from_connection_string(azurite.connection_string,
                                                    table_name) as store:
        assert counts(store.load()) == counts(ROWS)


def test_an_identity_that_sees_no_subscription_is_not_an_empty_estate() -> None:
    with FakeAzure([]) as fake:
        result = discover(DiscoveryScope(), ResourceGraphSource(CRED, settings(fake)))
        assert result.rows == [] and not result.ok
        assert "no subscription is visible" in result.notes[0]
