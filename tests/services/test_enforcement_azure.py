"""Enforcement through the real azure-mgmt-network client against the HTTPS fake, with the audit
trail on Azurite: conditional writes, races, failures, drift and guardrails. Every fault test
ends with no lost change, no NSG wider than before, and an accurate report."""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.arm_nsg import ArmNsgGateway
from shared.adapters.audit_store import TableAuditLog
from shared.adapters.resource_graph import ResourceGraphSource
from shared.cli import main
from shared.domain.discovery import DiscoveryScope
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.local.azurite import Azurite
from shared.policy.guardrails import Guardrails
from shared.policy.loader import load_policy_file
from shared.policy.model import Ownership, Policy
from shared.policy.planner import owned
from shared.sample.estate import ESTATE_JSON_PATH
from shared.services.discovery import discover
from shared.services.enforcement import Reconciler, ReconcileReport
from tests.fakes.azure import FakeAzure
from tests.services.test_discovery_azure import CRED, ROWS, settings

POLICY_YAML_PATH = ESTATE_JSON_PATH.parent / "policy.yaml"
POLICY = load_policy_file(POLICY_YAML_PATH).policy
assert POLICY is not None


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with FakeAzure(ROWS, lro_polls=1) as running:
        yield running


@pytest.fixture
def audit(azurite: Azurite) -> Iterator[TableAuditLog]:
    prefix = f"e{uuid.uuid4().hex[:12]}"
    with TableAuditLog.from_connection_string(azurite.connection_string, prefix) as log:
        yield log
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        for table in service.list_tables():
            if table.name.startswith(prefix):
                service.delete_table(table.name)


def live(fake: FakeAzure) -> Inventory:
    result = discover(DiscoveryScope(), ResourceGraphSource(CRED, settings(fake)))
    assert result.ok
    return normalize(result.rows)


def reconcile(fake: FakeAzure, audit: TableAuditLog | None, *, apply: bool = True,
              policy: Policy = POLICY, guardrails: Guardrails | None = None,
              lro_timeout: float = 30) -> ReconcileReport:
    gateway = ArmNsgGateway(CRED, settings(fake, retries=1), lro_timeout=lro_timeout)
    try:
        return Reconciler(policy, gateway, audit, guardrails or Guardrails(), trigger="test",
                          actor="pytest").run(live(fake), apply=apply)
    finally:
        gateway.close()


def nsg_ids(fake: FakeAzure) -> list[str]:
    return sorted(r["id"] for r in ROWS if r["type"] == "microsoft.network/networksecuritygroups")


def rules_of(nsg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in nsg["properties"].get("securityRules", [])}


def unowned_of(nsg: dict[str, Any], policy: Policy = POLICY) -> dict[str, Any]:
    parsed = next(iter(normalize([nsg]).nsgs.values()))
    names = {r.name for r in parsed.rules if not owned(r, policy.ownership)}
    return {name: _comparable(rule) for name, rule in rules_of(nsg).items() if name in names}


def content(nsg: dict[str, Any]) -> dict[str, Any]:
    """Every rule's meaning (names and properties, without etags and provisioning state)."""
    return {name: _comparable(rule) for name, rule in rules_of(nsg).items()}


def _comparable(rule: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in rule.get("properties", {}).items()
             if k not in {"provisioningState"} and v not in ("", [], None)}
    return {"name": rule["name"], "properties": props}


def test_dry_run_writes_nothing_and_stores_the_plan(fake: FakeAzure,
                                                   audit: TableAuditLog) -> None:
    report = reconcile(fake, audit, apply=False)
    assert report.dry_run and report.writes == 0 and fake.count("PUT") == 0
    assert report.outcomes and {o.result for o in report.outcomes} == {"planned"}
    stored = audit.get_plan(report.plan_id)
    assert stored is not None and stored["summary"] == report.summary()


def test_apply_writes_each_changed_nsg_once_then_nothing(fake: FakeAzure,
                                                        audit: TableAuditLog) -> None:
    before = {i: fake.nsg(i) for i in nsg_ids(fake)}
    report = reconcile(fake, audit)
    changed = [o.nsg_id for o in report.outcomes]
    assert report.ok, report.as_dict()["outcomes"]
    assert {o.result for o in report.outcomes} == {"applied"}
    assert fake.count("PUT") == report.writes == len(changed) > 0
    assert all(r.headers.get("if-match") for r in fake.requests if r.method == "PUT")
    for nsg_id in nsg_ids(fake):  # unowned rules exactly as they were, everywhere
        assert unowned_of(fake.nsg(nsg_id)) == unowned_of(before[nsg_id])
    entries = audit.entries(report.plan_id)
    assert sorted(e["nsg"] for e in entries) == sorted(changed)
    assert all(e["result"] == "applied" and e["after"] and e["actor"] == "pytest"
               for e in entries)
    again = reconcile(fake, audit)
    assert again.ok and again.writes == 0 and again.outcomes == []
    assert fake.count("PUT") == report.writes


def test_a_concurrent_writer_wins_the_race_and_keeps_its_change(fake: FakeAzure,
                                                               audit: TableAuditLog) -> None:
    target = nsg_ids(fake)[0]
    theirs = {"name": "ops-emergency-block", "properties": {
        "priority": 150, "direction": "Inbound", "access": "Deny", "protocol": "*",
        "sourceAddressPrefix": "203.0.113.0/24", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "*"}}

    def portal_edit() -> None:
        body = fake.nsg(target)
        body["properties"]["securityRules"].append(theirs)
        fake.set_nsg(target, body)

    fake.before_put(target, portal_edit)
    report = reconcile(fake, audit)
    outcome = next(o for o in report.outcomes if o.nsg_id.lower() == target.lower())
    assert outcome.result == "applied" and outcome.attempts == 2
    final = rules_of(fake.nsg(target))
    assert "ops-emergency-block" in final  # their change survived
    assert any(n.startswith("zts-") for n in final)  # and ours is on top
    results = [(e["attempt"], e["result"]) for e in audit.entries(report.plan_id)
               if e["nsg"].lower() == target.lower()]
    assert results == [(1, "conflict"), (2, "applied")]


def test_a_writer_that_never_stops_makes_it_give_up_without_writing(
        fake: FakeAzure, audit: TableAuditLog) -> None:
    target = nsg_ids(fake)[0]
    for _ in range(3):
        fake.before_put(target, lambda: fake.set_nsg(target, fake.nsg(target)))
    before = fake.nsg(target)
    report = reconcile(fake, audit)
    outcome = next(o for o in report.outcomes if o.nsg_id.lower() == target.lower())
    assert outcome.result == "conflict" and outcome.attempts == 3
    assert "gave up after 3 attempts" in outcome.message
    assert content(fake.nsg(target)) == content(before)
    assert not report.ok


def test_a_500_on_one_nsg_is_isolated(fake: FakeAzure, audit: TableAuditLog) -> None:
    target = nsg_ids(fake)[1]
    name = target.rsplit("/", 1)[-1]
    fake.add_fault("PUT", f"networkSecurityGroups/{name}$", 500, times=10)
    before = fake.nsg(target)
    report = reconcile(fake, audit)
    results = {o.nsg_id.lower(): o for o in report.outcomes}
    assert results[target.lower()].result == "failed"
    assert "500" in results[target.lower()].message or "Internal" in results[
        target.lower()].message
    assert content(fake.nsg(target)) == content(before)  # not touched, so not wider
    others = [o for k, o in results.items() if k != target.lower()]
    assert others and all(o.result == "applied" for o in others)
    assert not report.ok and report.summary()["results"]["failed"] == 1


def test_a_failed_operation_leaves_the_nsg_as_it_was(fake: FakeAzure,
                                                     audit: TableAuditLog) -> None:
    target = nsg_ids(fake)[2]
    fake.lro_fail.add(target.lower())
    before = fake.nsg(target)
    report = reconcile(fake, audit)
    outcome = next(o for o in report.outcomes if o.nsg_id.lower() == target.lower())
    assert outcome.result == "failed" and "operation failed" in outcome.message
    assert content(fake.nsg(target)) == content(before)
    entry = next(e for e in audit.entries(report.plan_id) if e["nsg"].lower() == target.lower())
    assert entry["result"] == "failed" and entry["after"]


def test_an_operation_that_times_out_is_checked_by_reading_back(fake: FakeAzure,
                                                                audit: TableAuditLog) -> None:
    target = nsg_ids(fake)[0]
    fake.lro_hang.add(target.lower())
    report = reconcile(fake, audit, lro_timeout=0.5)
    outcome = next(o for o in report.outcomes if o.nsg_id.lower() == target.lower())
    assert outcome.result == "applied", outcome.message  # the fake commits on PUT
    assert "had not finished" in outcome.message and "read back" in outcome.message


def test_hand_edits_of_owned_rules_are_drift_reverted_and_reported(
        fake: FakeAzure, audit: TableAuditLog) -> None:
    first = reconcile(fake, audit)
    assert first.ok and not first.findings
    target = first.outcomes[0].nsg_id
    body = fake.nsg(target)
    ours = next(r for r in body["properties"]["securityRules"] if r["name"].startswith("zts-")
                and r["properties"]["access"] == "Allow" and r["name"] != "zts-allow-azure-lb-in")
    ours["properties"]["destinationPortRange"] = "*"  # someone "temporarily" opened all ports
    ours["properties"].pop("destinationPortRanges", None)
    fake.set_nsg(target, body)
    second = reconcile(fake, audit)
    assert second.writes == 1
    outcome = second.outcomes[0]
    assert outcome.result == "applied" and outcome.drift is not None
    assert outcome.drift.changed == (ours["name"],)
    [finding] = second.findings
    assert finding.detection == "drift" and finding.severity == "high"
    assert finding.evidence["reverted"] is True and ours["name"] in json.dumps(finding.evidence)
    restored = rules_of(fake.nsg(target))[ours["name"]]["properties"]
    assert restored.get("destinationPortRange") != "*"


def test_mass_deletion_is_refused_before_any_write(fake: FakeAzure,
                                                   audit: TableAuditLog) -> None:
    assert reconcile(fake, audit).ok
    writes = fake.count("PUT")
    empty = dataclasses.replace(POLICY, groups=(), rules=())
    report = reconcile(fake, audit, policy=empty)
    assert report.refused and "zts-owned rules" in report.refused[0]
    assert report.writes == 0 and fake.count("PUT") == writes
    assert {o.result for o in report.outcomes} == {"planned"}
    allowed = reconcile(fake, audit, policy=empty, guardrails=Guardrails(max_delete_fraction=1))
    assert allowed.ok and allowed.writes > 0


def test_cli_apply_is_a_dry_run_unless_told_yes(fake: FakeAzure, azurite: Azurite,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_ARM_ENDPOINT", fake.url)
    monkeypatch.setenv("ZTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_LRO_POLL_SECONDS", "0")  # the fake answers Retry-After: 0
    monkeypatch.setenv("ZTS_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("ZTS_TABLE_PREFIX", f"c{uuid.uuid4().hex[:12]}")
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["apply", "--policy", str(POLICY_YAML_PATH), "--json"], out, err) == 0, \
        err.getvalue()
    dry = json.loads(out.getvalue())
    assert dry["dryRun"] and dry["summary"]["writes"] == 0 and fake.count("PUT") == 0
    out = io.StringIO()
    assert main(["apply", "--policy", str(POLICY_YAML_PATH), "--yes", "--json"], out, err) == 0
    applied = json.loads(out.getvalue())
    assert applied["summary"]["writes"] == fake.count("PUT") == dry["summary"]["nsgsToChange"]
    out = io.StringIO()
    assert main(["plans", "show", applied["planId"]], out, err) == 0
    shown = json.loads(out.getvalue())
    assert shown["id"] == applied["planId"] and len(shown["writes"]) == applied["summary"][
        "writes"]


def test_a_plan_with_errors_writes_nothing(fake: FakeAzure, audit: TableAuditLog) -> None:
    cramped = dataclasses.replace(POLICY, ownership=Ownership(band_low=1000, band_high=1002))
    report = reconcile(fake, audit, policy=cramped)
    assert report.plan.errors and report.refused
    assert all(r.startswith("plan error") for r in report.refused)
    assert "priority band" in report.refused[0]
    assert report.writes == 0 and fake.count("PUT") == 0 and not report.ok
