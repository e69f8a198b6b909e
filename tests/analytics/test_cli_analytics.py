"""`zts analyze`, `zts recommend` and `zts simulate` through their argparse handlers."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.analytics_files import SAMPLE_CONFIG
from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import LocalEngine
from shared.cli_analytics import add_analytics_commands
from shared.policy.compiler import compile_policy
from shared.policy.loader import load_policy, load_policy_file
from shared.sample.estate import ESTATE_JSON_PATH
from tests.analytics.conftest import Sample, enrichment

SAMPLE_POLICY = ESTATE_JSON_PATH.parent / "policy.yaml"


def zts(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="zts")
    add_analytics_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(args, out, err)
    return code, out.getvalue(), err.getvalue()


def analyze_sample(sample: Sample, *extra: str | Path) -> tuple[int, str, str]:
    return zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--flow-logs", sample.flow_dir,
               "--config", SAMPLE_CONFIG, *extra)


def test_analyze_json(sample: Sample) -> None:
    code, out, _ = analyze_sample(sample, "--json")
    assert code == 1  # findings
    document = json.loads(out)
    assert set(document) == {"findings", "stats"}
    assert [f["detection"] for f in document["findings"]] == [
        "risky_region", "malicious_flow", "cross_subscription", "blast_radius", "blast_radius"]
    assert document["stats"]["complete"] is True
    assert document["stats"]["input"]["blobs"]["found"] == len(sample.manifest.files)
    assert document["stats"]["input"]["tuples"]["read"] == sample.manifest.tuple_count


def test_analyze_text_and_extra_origin(sample: Sample) -> None:
    code, out, err = analyze_sample(sample, "--origin", "10.30.0.4")
    assert code == 1
    assert "risky_region" in out and "INCOMPLETE" not in err
    assert out.count("blast_radius") >= 3  # two automatic origins and the named one


def test_the_same_rows_exported_from_log_analytics_give_the_same_findings(
        sample: Sample, tmp_path: Path) -> None:
    """Export the enriched tables as Log Analytics would (JSON array for NTANetAnalytics, CSV
    for NTAIpDetails), analyze the export, and compare fingerprints with the flow-log run."""
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        exports = {}
        for table in ("NTANetAnalytics", "NTAIpDetails"):
            cursor = engine.con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description or []]
            exports[table] = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def wire(value: Any) -> Any:
        return value.isoformat() + "Z" if isinstance(value, datetime) else value

    net = tmp_path / "nta.json"
    net.write_text(json.dumps([{k: wire(v) for k, v in r.items()}
                               for r in exports["NTANetAnalytics"]]))
    ip = tmp_path / "nta-ip.csv"
    with ip.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(exports["NTAIpDetails"][0]))
        writer.writeheader()
        writer.writerows({k: wire(v) for k, v in r.items()} for r in exports["NTAIpDetails"])
    _, from_logs, _ = analyze_sample(sample, "--json")
    code, from_export, err = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--nta", net,
                                 "--nta-ip", ip, "--config", SAMPLE_CONFIG, "--json")
    assert code == 1, err
    logs, export = json.loads(from_logs), json.loads(from_export)
    assert [f["fingerprint"] for f in export["findings"]] == [
        f["fingerprint"] for f in logs["findings"]]
    assert export["stats"]["input"]["rows"]["skipped"] == 0


def test_bad_rows_in_an_export_are_skipped_with_reasons(tmp_path: Path) -> None:
    net = tmp_path / "nta.json"
    net.write_text(json.dumps([
        {"SubType": "FlowLog", "FlowStartTime": "2026-11-02T09:00:00Z", "DestPort": "443"},
        {"SubType": "FlowLog", "FlowStartTime": "yesterday", "DestPort": 443},
    ]))
    code, out, _ = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--nta", net, "--json")
    stats = json.loads(out)["stats"]
    assert code == 1 and stats["complete"] is False
    assert stats["input"]["rows"]["reasons"] == {
        "bad FlowStartTime value": {"count": 1, "examples": ["nta.json"]}}


def test_invalid_inputs_exit_2(sample: Sample, tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("risky_countries: [KP]\nrisky_contries: [IR]\n")
    code, _, err = analyze_sample(sample)
    code, _, err = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--flow-logs",
                       sample.flow_dir, "--config", bad)
    assert code == 2 and "c.yaml:2: risky_contries: unknown key" in err
    code, _, err = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--flow-logs",
                       tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    with pytest.raises(SystemExit):
        zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--flow-logs", tmp_path,
            "--origin", "not-an-ip")


def test_no_flows_is_not_clean(tmp_path: Path) -> None:
    code, out, _ = zts("analyze", "--snapshot", ESTATE_JSON_PATH, "--flow-logs", tmp_path,
                       "--json")
    assert code == 1
    assert json.loads(out)["stats"]["complete"] is False


def test_recommend_then_simulate_closes_the_loop(sample: Sample, tmp_path: Path) -> None:
    policy = tmp_path / "recommended.yaml"
    code, out, err = zts("recommend", "--snapshot", ESTATE_JSON_PATH, "--flow-logs",
                         sample.flow_dir, "--config", SAMPLE_CONFIG, "--out", policy, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["coverage"]["share"] == 1.0
    assert summary["coverage"]["connections"] == summary["coverage"]["covered_connections"]
    loaded = load_policy_file(policy)
    assert loaded.policy is not None, loaded.errors
    from shared.domain.normalize import normalize

    compiled = compile_policy(loaded.policy, normalize(sample.rows))
    assert compiled.errors == []
    assert loaded.policy.ownership.band_low > 310  # clear of the estate's hand-made rules
    code, out, err = zts("simulate", "--policy", policy, "--snapshot", ESTATE_JSON_PATH,
                         "--flow-logs", sample.flow_dir, "--config", SAMPLE_CONFIG, "--json")
    result = json.loads(out)
    assert result["plan_errors"] == [], result["plan_errors"]
    assert (result["newly_denied"], result["newly_allowed"]) == ([], [])
    assert code == 0


def test_simulate_the_sample_policy_shows_what_would_break(sample: Sample) -> None:
    code, out, _ = zts("simulate", "--policy", SAMPLE_POLICY, "--snapshot", ESTATE_JSON_PATH,
                       "--flow-logs", sample.flow_dir, "--config", SAMPLE_CONFIG, "--json")
    assert code == 1
    result = json.loads(out)
    denied = {(c["src_group"], c["dst_group"], c["protocol"], c["port"])
              for c in result["newly_denied"]}
    # the planted lateral SSH hop and cross-subscription call would be blocked
    assert ("estate+logic", "estate+sap", "tcp", 22) in denied
    assert ("estate+logic", "analytics+estate", "tcp", 8080) in denied
    assert result["summary"]["newly_denied_flows"] > 0


def test_recommend_extends_an_existing_policy(sample: Sample) -> None:
    code, out, err = zts("recommend", "--snapshot", ESTATE_JSON_PATH, "--flow-logs",
                         sample.flow_dir, "--config", SAMPLE_CONFIG, "--policy", SAMPLE_POLICY,
                         "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["coverage_before"]["share"] < 1.0 == summary["coverage"]["share"]
    loaded = load_policy(summary["yaml"])
    assert loaded.policy is not None
    existing = load_policy_file(SAMPLE_POLICY).policy
    assert existing is not None
    assert {r.name for r in existing.rules} < {r.name for r in loaded.policy.rules}
