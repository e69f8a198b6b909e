"""Every query runs on duckdb-kql over fixture tables with known answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

import pytest

from shared.adapters.analytics_files import KQL_DIR
from shared.adapters.duckdb_engine import LocalEngine
from shared.analytics.catalog import Catalog, render_query
from shared.analytics.kql import preamble
from shared.analytics.query import QueryStatus
from shared.analytics.schema import TABLES
from tests.analytics.kql_fixtures import (
    CONFIG,
    SUB_A,
    SUB_B,
    SUBSCRIPTIONS,
    TABLE_ROWS,
    WINDOW,
    at,
    complete,
)


@pytest.fixture(scope="module")
def loaded() -> Iterator[LocalEngine]:
    engine = LocalEngine()
    for table in TABLES:
        for row in TABLE_ROWS[table]:
            values = [v.astimezone(UTC).replace(tzinfo=None) if hasattr(v, "astimezone") else v
                      for v in complete(table, row)]
            engine.con.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(values))})',
                               values)
    yield engine
    engine.close()


def run(engine: LocalEngine, detections: tuple[Catalog, dict[str, str]], name: str) -> list:
    catalog, queries = detections
    text = render_query(catalog.get(name), queries[name], CONFIG, WINDOW, SUBSCRIPTIONS)
    result = engine.run(text, WINDOW)
    assert result.status is QueryStatus.OK, result.error
    return list(result.rows)


def test_risky_region(loaded: LocalEngine, detections) -> None:
    rows = run(loaded, detections, "risky_region")
    got = [(r["PublicIp"], r["PrivateIp"], r["Direction"], r["CountryCode"], r["AllowedFlows"],
            r["DeniedFlows"], r["Ports"]) for r in rows]
    assert got == [
        ("192.0.2.99", "10.1.0.5", "outbound", "", 1, 0, [443]),  # unknown: "could not check"
        ("198.51.100.23", "10.1.0.4", "inbound", "KP", 2, 0, [443]),
        ("198.51.100.23", "10.1.0.6", "inbound", "KP", 0, 4, [22]),
        ("203.0.113.9", "10.1.0.5", "outbound", "IR", 1, 0, [8443]),
    ]
    first = rows[1]
    assert first["FirstSeen"] == first["FirstAllowed"] == at(2)
    assert first["Vm"] == "rg-a/vm-web" and first["Subscription"] == SUB_A
    assert rows[2]["FirstAllowed"] is None  # never allowed


def test_malicious_flow(loaded: LocalEngine, detections) -> None:
    rows = run(loaded, detections, "malicious_flow")
    got = [(r["PublicIp"], r["PrivateIp"], r["ThreatType"], r["CountryCode"], r["AllowedFlows"])
           for r in rows]
    assert got == [("198.18.5.7", "10.2.0.4", "Scanner", "US", 1),
                   ("203.0.113.66", "10.1.0.5", "Botnet", "NL", 3)]
    assert rows[0]["Description"] == 'lab "range"'  # the escaped value came through intact
    assert rows[1]["Domain"] == "bad.example"


def test_azure_service(loaded: LocalEngine, detections) -> None:
    rows = run(loaded, detections, "azure_service")
    got = [(r["VnetPath"], r["Service"], r["Flows"], r["Talkers"]) for r in rows]
    assert got == [
        (f"{SUB_A}/rg-net/vnet-a", "AzureMonitor", 1, 1),
        (f"{SUB_A}/rg-net/vnet-a", "Storage", 7, 2),
        (f"{SUB_B}/rg-net/vnet-b", "Sql", 1, 1),
    ]


def test_cross_subscription(loaded: LocalEngine, detections) -> None:
    rows = run(loaded, detections, "cross_subscription")
    assert len(rows) == 1
    (row,) = rows
    assert (row["SrcSubscription"], row["DestSubscription"], row["SrcIp"], row["DestIp"],
            row["Flows"], row["Ports"]) == (SUB_A, SUB_B, "10.1.0.5", "10.2.0.4", 2, [8080])
    assert sorted(row["Rules"]) == [f"Inbound|{SUB_B}/rg-net/nsg-b|AllowVnetInBound",
                                    f"Outbound|{SUB_A}/rg-net/nsg-a|AllowVnetOutBound"]
    assert row["SrcVnet"] == f"{SUB_A}/rg-net/vnet-a"


def test_blast_radius_edges(loaded: LocalEngine, detections) -> None:
    rows = run(loaded, detections, "blast_radius")
    got = [(r["SrcIp"], r["DestIp"], r["FirstContact"], r["LastContact"]) for r in rows]
    assert got == [("10.3.0.4", "10.1.0.4", at(1), at(1)),
                   ("10.1.0.4", "10.1.0.5", at(3), at(40)),
                   ("10.1.0.5", "10.2.0.4", at(21), at(21))]


def test_observed_flows(loaded: LocalEngine) -> None:
    body = (KQL_DIR / "observed_flows.kql").read_text(encoding="utf-8")
    text = preamble([("WindowStart", WINDOW.start), ("WindowEnd", WINDOW.end)]) + body
    result = loaded.run(text, WINDOW)
    assert result.status is QueryStatus.OK, result.error
    got = {(r["Src"], r["Dest"], r["DestPort"]): (r["Flows"], r["Allowed"], r["Denied"])
           for r in result.rows}
    assert got[("10.1.0.5", "10.2.0.4", 8080)] == (2, 2, 0)  # both ends logged: not doubled
    assert got[("198.51.100.23", "10.1.0.6", 22)] == (4, 0, 4)
    assert got[("198.51.100.77", "10.1.0.4", 443)] == (1, 1, 0)  # public entries expanded
    assert got[("10.2.0.4", "10.1.0.6", 22)] == (1, 0, 1)
    assert ("198.51.100.23", "10.1.0.4", 443) in got and got[
        ("198.51.100.23", "10.1.0.4", 443)] == (2, 2, 0)


def test_a_broken_query_is_a_failed_result_not_an_exception(loaded: LocalEngine) -> None:
    result = loaded.run("NTANetAnalytics | where NoSuchColumn > 0", WINDOW)
    assert result.status is QueryStatus.FAILED and result.error
