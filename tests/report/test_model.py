"""The report's data on the sample estate: groups and buckets, the policy read literally against
the planted incidents, used / unused / violation / ungoverned edges, findings, blast radius
and the plan view."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.findings import Finding
from shared.policy.loader import load_policy
from shared.report.findings import parse_findings_document, portal_url
from shared.report.flows import ObservedFlow
from shared.report.plan import plan_view
from shared.report.service import report_document
from tests.report.conftest import POLICY_PATH, Sample

WEB_01, APP_01, SAP_01 = "10.10.1.4", "10.10.2.4", "10.20.1.4"


@pytest.fixture(scope="module")
def document(sample: Sample) -> dict[str, Any]:
    return report_document(sample.inventory, sample.policy, sample.flows, sample.findings)


def edge(document: dict[str, Any], kind: str, src: str, dst: str) -> dict[str, Any]:
    found = [e for e in document["edges"] if e["id"] == f"{kind}|{src}|{dst}"]
    assert found, f"no {kind} edge {src} -> {dst}"
    return found[0]


def pair(found: dict[str, Any], src: str, dst: str, port: int) -> dict[str, Any]:
    matches = [p for p in found["pairs"] if (p["src"], p["dst"], p["port"]) == (src, dst, port)]
    assert matches, f"{src} -> {dst}:{port} not among {found['id']}'s pairs"
    return matches[0]


def test_nodes_are_the_policy_groups_and_the_outside_buckets(document: dict[str, Any]) -> None:
    nodes = {n["id"]: n for n in document["nodes"]}
    groups = [n["label"] for n in document["nodes"] if n["kind"] == "group"]
    assert groups == ["web", "logic", "sap", "sap-db", "analytics", "reporting", "jump-hosts",
                      "dns", "estate"]  # policy order
    assert (nodes["g:web"]["members"], nodes["g:web"]["subscriptions"],
            nodes["g:web"]["vnets"]) == (4, ["Payroll-Prod"], ["payroll-vnet"])
    assert nodes["g:estate"]["members"] == 44
    assert len(nodes["g:estate"]["subscriptions"]) == 4
    assert nodes["g:logic"]["selector"] == "all(asg Logic; vnet payroll-vnet)"
    assert {"x:internet", "x:azure"} <= set(nodes)
    assert "203.0.113.66" in {a["ip"] for a in nodes["x:internet"]["addresses"]}  # the C2
    assert nodes["g:web"]["findings"] == {"high": 2}  # risky_region + blast radius on web-01


def test_planted_incidents_land_on_the_right_edges(document: dict[str, Any]) -> None:
    # risky-country inbound to web-01:443 is what internet-to-web allows: a used policy edge
    allowed = edge(document, "policy", "x:internet", "g:web")
    assert allowed["status"] == "used"
    assert pair(allowed, "198.51.100.23", WEB_01, 443)["nsgAllowed"] == 1
    # the lateral movement web-01 -> app-01:445 and app-01 -> sap-01:22 is not allowed
    lateral = edge(document, "violation", "g:web", "g:logic")
    assert pair(lateral, WEB_01, APP_01, 445)["nsgAllowed"] == 1  # NSGs let it through today
    assert lateral["reasons"] == [{"reason": "default deny", "flows": 1}]
    assert pair(edge(document, "violation", "g:logic", "g:sap"), APP_01, SAP_01, 22)
    # so is the cross-subscription call payroll-app-01 -> hn0-hdiprod:8080
    assert pair(edge(document, "violation", "g:logic", "g:analytics"), APP_01, "10.30.0.4",
                8080)["nsgAllowed"] == 1
    # denied internet scans: not allowed by policy, and denied by the NSGs
    scans = edge(document, "violation", "x:internet", "g:web")
    assert scans["nsgAllowed"] == 0
    assert {(p["src"], p["port"]) for p in scans["pairs"]} == {("203.0.113.14", 22),
                                                             ("203.0.113.15", 3389)}
    # the C2 beacon: outbound to the Internet, which `outbound: allow` does not govern
    beacon = edge(document, "ungoverned", "g:sap", "x:internet")
    assert pair(beacon, SAP_01, "203.0.113.66", 443)["flows"] == 4


def test_flows_logged_at_both_ends_are_counted_once(sample: Sample,
                                                    document: dict[str, Any]) -> None:
    both = {(f.src_ip, f.dst_ip, f.dest_port) for f in sample.flows if f.direction == "inbound"}
    counted = sum(e["flows"] for e in document["edges"])
    raw = sum(f.flows for f in sample.flows)
    duplicates = sum(f.flows for f in sample.flows if f.direction == "outbound"
                     and (f.src_ip, f.dst_ip, f.dest_port) in both)
    assert duplicates > 0
    assert counted == raw - duplicates == document["summary"]["flows"]


def test_rules_count_the_flows_they_admit(document: dict[str, Any]) -> None:
    rules = {r["name"]: r for r in document["rules"]}
    assert list(rules) == ["internet-to-web", "web-to-logic", "logic-to-sap", "sap-to-db",
                           "reporting-to-analytics", "analytics-internal", "estate-to-dns",
                           "jump-to-estate"]
    assert all(r["flows"] > 0 for r in rules.values())
    web = edge(document, "policy", "g:web", "g:logic")
    assert web["rules"] == [{"name": "web-to-logic", "priority": 110, "ports": "443, 8443",
                             "protocol": "tcp", "flows": rules["web-to-logic"]["flows"]}]


POLICY_WITH_UNUSED = """
apiVersion: zts/v1
posture: {inbound: default-deny, outbound: allow}
enforcement: subnet
ownership: {band: [1000, 2999], prefix: zts-}
groups:
  web: {asg: Web}
  logic: {all: [{asg: Logic}, {vnet: payroll-vnet}]}
  dns: {tags: {role: dns}}
rules:
  - {name: web-to-logic, priority: 110, from: web, to: logic, ports: [443], protocol: tcp, action: allow}
  - {name: logic-to-dns-tcp, priority: 120, from: logic, to: dns, ports: [853], protocol: tcp, action: allow}
  - {name: logic-storage, priority: 130, from: logic, to: Storage, ports: [443], protocol: tcp, action: allow}
"""  # noqa: E501


def test_allowed_but_never_used_and_unmeasurable_edges(sample: Sample) -> None:
    loaded = load_policy(POLICY_WITH_UNUSED)
    assert loaded.policy is not None, loaded.errors
    document = report_document(sample.inventory, loaded.policy, sample.flows, ())
    assert edge(document, "policy", "g:web", "g:logic")["status"] == "used"
    assert edge(document, "policy", "g:logic", "g:dns")["status"] == "unused"
    assert edge(document, "policy", "g:logic", "t:Storage")["status"] == "untracked"
    assert document["summary"]["edges"]["unused"] == 1
    without_flows = report_document(sample.inventory, loaded.policy, None, ())
    assert {e["status"] for e in without_flows["edges"]} == {"nodata", "untracked"}
    assert without_flows["summary"]["flows"] is None
    # groups nobody holds traffic for still appear; ungrouped estate NICs get their bucket
    assert "x:ungrouped" in {n["id"] for n in document["nodes"]}


def test_without_a_policy_the_map_shows_vnets(sample: Sample) -> None:
    document = report_document(sample.inventory, None, sample.flows, ())
    assert sorted(n["label"] for n in document["nodes"] if n["kind"] == "vnet") == [
        "erp-vnet", "hdi-vnet", "hub-vnet", "payroll-vnet"]
    assert {e["kind"] for e in document["edges"]} == {"observed"}
    assert document["plan"] is None
    assert any("no policy" in n for n in document["meta"]["notes"])


def test_findings_sorted_with_portal_links(document: dict[str, Any]) -> None:
    severities = [f["severity"] for f in document["findings"]]
    assert severities == ["critical", "high", "high", "high", "medium"]
    first = document["findings"][0]
    assert first["detection"] == "malicious_flow"
    assert first["portal"] == "https://portal.azure.com/#@/resource" + first["resource"]
    assert portal_url("javascript:alert(1)") is None
    assert portal_url("/subscriptions/x/<b>") == (
        "https://portal.azure.com/#@/resource/subscriptions/x/%3Cb%3E")


def test_blast_radius_entries_follow_the_findings(document: dict[str, Any]) -> None:
    entries = {b["origin"]: b for b in document["blast"]}
    assert set(entries) == {WEB_01, SAP_01}
    web = entries[WEB_01]
    assert (web["host"], web["node"]) == ("payroll-web-01", "g:web")
    first = web["reached"][0]
    assert (first["ip"], first["hops"], first["via"], first["host"]) == (
        APP_01, 1, WEB_01, "payroll-app-01")
    assert web["maxHops"] == max(h["hops"] for h in web["reached"]) >= 2
    times = [h["firstSeen"] for h in web["reached"]]
    assert times == sorted(times)
    assert web["policy"]["computed"] is True


def test_blast_radius_from_a_hand_written_finding(sample: Sample) -> None:
    finding = Finding("blast_radius", "high", "web-01 compromised", "", datetime(
        2026, 11, 2, 9, 0, tzinfo=UTC), {
        "origin": WEB_01, "since": "2026-11-02T09:00:00.000Z",
        "reached": [{"ip": SAP_01, "hops": 2, "first_seen": "2026-11-02T09:20:00.000Z",
                     "via": APP_01},
                    {"ip": APP_01, "hops": 1, "first_seen": "2026-11-02T09:10:00.000Z",
                     "via": WEB_01},
                    {"hops": 3}, "junk"]}, (WEB_01,))
    (entry,) = report_document(sample.inventory, None, None, [finding])["blast"]
    assert [(h["ip"], h["hops"]) for h in entry["reached"]] == [(APP_01, 1), (SAP_01, 2)]
    assert entry["policy"] == {"computed": False, "reason": "not in the finding"}


def test_plan_view_per_nsg(document: dict[str, Any]) -> None:
    plan = document["plan"]
    assert plan["totals"] == {"add": 28, "change": 0, "remove": 0}
    web = next(n for n in plan["nsgs"] if n["name"] == "nsg-payroll-web")
    assert (web["resourceGroup"], web["subscriptionName"], web["add"]) == (
        "rg-payroll-network", "Payroll-Prod", 4)
    first = web["rules"][0]
    assert first == {"change": "add", "name": "zts-internet-to-web-in", "priority": 1000,
                     "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                     "source": "Internet", "destination": "Web (ASG)", "ports": "80, 443",
                     "description": "zts policy rule internet-to-web: internet -> web"}
    assert web["portal"].endswith("/networkSecurityGroups/nsg-payroll-web")
    assert plan["source"].startswith("Computed")


def test_plan_view_of_a_stored_plan() -> None:
    nsg = ("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/"
           "networkSecurityGroups/nsg-a")
    view = plan_view({"nsgs": [{"id": nsg, "add": [], "change": [{"name": "zts-x-in",
                                                                  "properties": {
                                                                      "priority": 1000,
                                                                      "destinationPortRanges": [
                                                                          "22", "443"],
                                                                      "sourceAddressPrefixes": [
                                                                          "10.0.0.0/24"]}}],
                                "remove": ["zts-old-in"], "desired": [{}],
                                "warnings": ["w1"]}],
                      "warnings": [{"nsg": nsg, "message": "w1"}, {"message": "general"}],
                      "errors": [{"nsg": "/other", "message": "missing NSG"}]},
                     source="Latest stored plan", plan_id="p1", subscriptions={"S1": "Prod"})
    (row,) = view["nsgs"]
    assert [r["change"] for r in row["rules"]] == ["change", "remove"]
    assert row["rules"][0]["ports"] == "22, 443"
    assert row["rules"][0]["source"] == "10.0.0.0/24"
    assert (row["subscriptionName"], row["desired"]) == ("Prod", 1)
    assert [w["message"] for w in view["warnings"]] == ["general"]  # w1 is on the NSG card
    assert [e["message"] for e in view["errors"]] == ["missing NSG"]  # NSG not listed


def test_findings_files_both_spellings_and_errors() -> None:
    good = parse_findings_document(
        '{"findings": [{"detection": "drift", "severity": "high", "title": "t", "resource":'
        ' "/subscriptions/s", "observedAt": "2026-11-02T09:00:00+00:00", "evidence": {}},'
        ' {"detection": "risky_region", "severity": "low", "summary": "s",'
        ' "fingerprint": "ab"}]}')
    assert not good.errors
    assert [(f.title, f.observed_at) for f in good.findings] == [
        ("t", "2026-11-02T09:00:00.000Z"), ("s", None)]
    bad = parse_findings_document('[{"detection": "x", "severity": "severe", "title": 1,'
                                  ' "observedAt": "yesterday", "evidence": []}, 3]', "f.json")
    assert bad.findings == ()
    assert bad.errors == (
        'f.json: findings[0].severity: "severe" is not one of informational, low, medium, '
        "high, critical",
        "f.json: findings[0].title: required text (or summary)",
        'f.json: findings[0].observedAt: "yesterday" is not an ISO 8601 time with a time zone',
        "f.json: findings[0].evidence: expected an object",
        "f.json: findings[1]: expected an object, got int",
    )
    assert parse_findings_document("{").errors[0].startswith("<findings>: not valid JSON")


def test_same_inputs_same_document(sample: Sample, document: dict[str, Any]) -> None:
    again = report_document(sample.inventory, sample.policy, list(reversed(sample.flows)),
                            list(reversed(sample.findings)))
    assert again == document
    assert POLICY_PATH.is_file()


def test_public_flow_into_a_cidr_group(sample: Sample) -> None:
    policy = load_policy(POLICY_WITH_UNUSED.replace(
        "  dns: {tags: {role: dns}}",
        "  dns: {tags: {role: dns}}\n  partners: {cidr: [198.51.100.0/25]}").replace(
        "rules:\n", "rules:\n  - {name: partners-in, priority: 100, from: partners, to: web, "
                    "ports: [443], protocol: tcp, action: allow}\n")).policy
    assert policy is not None
    flows = [ObservedFlow("198.51.100.23", "10.10.1.4", 443, "tcp", 2, 10, allowed=True,
                          direction="inbound")]
    document = report_document(sample.inventory, policy, flows, ())
    assert edge(document, "policy", "g:partners", "g:web")["flows"] == 2


def test_findings_without_a_resource_get_the_host_their_evidence_names(sample: Sample) -> None:
    """`zts analyze --json` prints no resource: the report finds it from the evidence."""
    printed = json.dumps({"findings": [
        {"detection": f.detection, "severity": f.severity, "fingerprint": f.fingerprint,
         "summary": f.title, "evidence": f.evidence} for f in sample.findings]}, default=str)
    loaded = parse_findings_document(printed)
    assert not loaded.errors and all(not f.resource for f in loaded.findings)
    document = report_document(sample.inventory, sample.policy, sample.flows, loaded.findings)
    assert sorted(f["resource"] for f in document["findings"]) == sorted(
        f.resource_id for f in sample.findings)
    assert all(f["portal"] for f in document["findings"])
