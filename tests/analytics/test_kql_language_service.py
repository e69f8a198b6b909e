"""Every .kql file is parsed and type-checked by Microsoft's Kusto language service
(@kusto/language-service-next) against the NTA schema, in one node process.

Each query is checked as it is sent: with its parameter preamble, built from hostile values
(quotes, backslashes, empty tables), so the escaping is checked by Kusto's own parser too.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.adapters.analytics_files import KQL_DIR
from shared.analytics.catalog import Catalog, render_query
from shared.analytics.config import AnalyticsConfig, ThreatEntry
from shared.analytics.kql import preamble
from shared.analytics.schema import TABLES, schema_signature
from tests.analytics.kql_fixtures import WINDOW

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "check_kql.js"
HOSTILE = AnalyticsConfig(
    risky_countries=("KP", "IR"),
    threats=(ThreatEntry(ipaddress.ip_network("203.0.113.0/24"), 'C2"; drop', 'a\\b "c"'),),
    allowed_pairs=(('x"y', "z\\"),),
)
EMPTY = AnalyticsConfig()
#: Columns each mapper reads: the type checker proves the query returns them.
NEEDED = {
    "risky_region": {"PublicIp", "PrivateIp", "Direction", "CountryCode", "AllowedFlows",
                     "DeniedFlows", "FirstSeen", "FirstAllowed", "Ports", "Vm", "Nic"},
    "malicious_flow": {"PublicIp", "PrivateIp", "ThreatType", "AllowedFlows", "FirstAllowed"},
    "azure_service": {"VnetPath", "Service", "Flows", "TalkerIps"},
    "cross_subscription": {"SrcSubscription", "DestSubscription", "SrcIp", "DestIp", "Flows",
                           "Rules", "Ports"},
    "blast_radius": {"SrcIp", "DestIp", "FirstContact", "LastContact"},
    "observed_flows": {"Src", "Dest", "DestPort", "L4Protocol", "Flows", "Allowed", "Denied"},
}


def _check(queries: list[dict[str, str]]) -> list[dict]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "@kusto" / "language-service-next").is_dir():
        pytest.skip("node or @kusto/language-service-next is not installed (run `make setup`)")
    document = {"tables": {t: schema_signature(t) for t in TABLES}, "queries": queries}
    done = subprocess.run([node, str(CHECKER)], input=json.dumps(document), text=True,
                          capture_output=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_every_kql_file_type_checks(detections: tuple[Catalog, dict[str, str]]) -> None:
    catalog, bodies = detections
    queries = []
    for config_name, config in (("hostile", HOSTILE), ("empty", EMPTY)):
        for detection in catalog.detections:
            text = render_query(detection, bodies[detection.id], config, WINDOW, ["s1", "s2"])
            queries.append({"name": f"{detection.id}/{config_name}", "text": text})
    observed = preamble([("WindowStart", WINDOW.start), ("WindowEnd", WINDOW.end)]) + (
        KQL_DIR / "observed_flows.kql").read_text(encoding="utf-8")
    queries.append({"name": "observed_flows/none", "text": observed})
    queries.append({"name": "canary", "text": "NTANetAnalytics | where CompletedFlow > 0"})
    results = {r["name"]: r for r in _check(queries)}
    canary = results.pop("canary")
    assert [d["code"] for d in canary["diagnostics"]] == ["KS142"]  # the checker really checks
    for name, result in results.items():
        errors = [d for d in result["diagnostics"] if d["severity"] == "Error"]
        assert errors == [], (name, errors)
        columns = {c for c, _ in result["columns"]}
        assert NEEDED[name.split("/")[0]] <= columns, (name, columns)
    assert len(results) == 2 * len(catalog.detections) + 1
    all_files = {p.stem for p in KQL_DIR.glob("*.kql")}
    assert all_files == {n.split("/")[0] for n in results}
