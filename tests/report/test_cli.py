"""``zts report`` through its own argparse wiring (``add_report_commands``): flow logs, an NTA
export, no policy, and every kind of unusable input (exit 2, nothing written)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.analytics_files import SAMPLE_CONFIG
from shared.cli_report import add_report_commands
from shared.sample.estate import ESTATE_JSON_PATH
from tests.report.conftest import POLICY_PATH, Sample

NTA_ROWS = [
    {"TimeGenerated": "2026-11-02T09:20:00Z", "SubType": "FlowLog", "FlowType": "IntraVNet",
     "SrcIp": "10.10.1.4", "DestIp": "10.10.2.4", "DestPort": 445, "L4Protocol": "T",
     "FlowDirection": "Inbound", "FlowStatus": "Allowed", "AllowedInFlows": 3,
     "BytesSrcToDest": 1000, "BytesDestToSrc": 200, "FlowStartTime": "2026-11-02T09:10:00Z",
     "FlowEndTime": "2026-11-02T09:12:00Z", "SrcPublicIps": "", "DestPublicIps": ""},
    {"TimeGenerated": "2026-11-02T09:20:00Z", "SubType": "FlowLog", "FlowType": "IntraVNet",
     "SrcIp": "10.10.1.4", "DestIp": "10.10.2.4", "DestPort": 443, "L4Protocol": "T",
     "FlowDirection": "Inbound", "FlowStatus": "Allowed", "AllowedInFlows": 7,
     "BytesSrcToDest": 10, "BytesDestToSrc": 20, "FlowStartTime": "2026-11-02T09:00:00Z",
     "FlowEndTime": "2026-11-02T09:15:00Z", "SrcPublicIps": "", "DestPublicIps": ""},
    {"TimeGenerated": "2026-11-02T09:20:00Z", "SubType": "StatusMessage"},
]


def run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="zts")
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    out, err = io.StringIO(), io.StringIO()
    code: int = args.handler(args, out, err)
    return code, out.getvalue(), err.getvalue()


def embedded(path: Path) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="zts-data">(.*?)</script>',
                      path.read_text(encoding="utf-8"))
    assert found is not None
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


@pytest.fixture(scope="module")
def findings_file(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("findings") / "findings.json"
    path.write_text(json.dumps({"findings": [f.as_dict() for f in sample.findings]}))
    return path


def test_flow_logs_policy_and_findings(sample: Sample, findings_file: Path,
                                       tmp_path: Path) -> None:
    out_path = tmp_path / "out" / "report.html"
    code, out, err = run("--snapshot", str(ESTATE_JSON_PATH), "--policy", str(POLICY_PATH),
                         "--flow-logs", str(sample.flow_dir), "--analytics-config",
                         str(SAMPLE_CONFIG), "--findings", str(findings_file),
                         "--out", str(out_path))
    assert code == 0, err
    assert out.startswith(f"wrote {out_path} (") and "5 finding(s)" in out
    document = embedded(out_path)
    assert document["summary"]["flows"] == 1603
    assert len(document["findings"]) == 5
    assert document["meta"]["sources"] == {
        "snapshot": "estate.json", "policy": "policy.yaml", "findings": "findings.json",
        "flow logs": sample.flow_dir.name}


@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_nta_export_without_policy(tmp_path: Path, suffix: str) -> None:
    export = tmp_path / f"nta.{suffix}"
    if suffix == "json":
        export.write_text(json.dumps(NTA_ROWS))
    else:
        columns = sorted({k for row in NTA_ROWS for k in row})
        with export.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(NTA_ROWS)
    code, _, err = run("--snapshot", str(ESTATE_JSON_PATH), "--nta", str(export), "--out",
                       str(tmp_path / "r.html"))
    assert code == 0, err
    document = embedded(tmp_path / "r.html")
    (observed,) = document["edges"]
    assert (observed["kind"], observed["from"], observed["to"], observed["flows"]) == (
        "observed", "g:payroll-vnet", "g:payroll-vnet", 10)
    assert document["meta"]["window"] == {"start": "2026-11-02T09:00:00.000Z",
                                          "end": "2026-11-02T09:15:00.000Z"}


def test_unusable_inputs_exit_2_and_write_nothing(tmp_path: Path) -> None:
    out_path = tmp_path / "never.html"
    bad_findings = tmp_path / "bad.json"
    bad_findings.write_text('{"findings": [{"detection": "x", "severity": "huge"}]}')
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("apiVersion: zts/v1\ngroups: {Bad Name: {asg: Web}}\n")
    cases = [
        (["--snapshot", str(tmp_path / "missing.json")], "cannot read snapshot"),
        (["--snapshot", str(ESTATE_JSON_PATH), "--policy", str(bad_policy)], "error:"),
        (["--snapshot", str(ESTATE_JSON_PATH), "--findings", str(bad_findings)],
         "findings[0].severity"),
        (["--snapshot", str(ESTATE_JSON_PATH), "--flow-logs", str(tmp_path / "nowhere")],
         "does not exist"),
        (["--snapshot", str(ESTATE_JSON_PATH), "--nta", str(tmp_path / "none.json")],
         "does not exist"),
    ]
    for argv, message in cases:
        code, out, err = run(*argv, "--out", str(out_path))
        assert (code, out) == (2, ""), (argv, err)
        assert message in err, (argv, err)
    assert not out_path.exists()
    with pytest.raises(SystemExit):
        run("--snapshot", "s.json", "--flow-logs", "d", "--nta", "f", "--out", "o.html")
