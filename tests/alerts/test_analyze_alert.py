"""``zts analyze --alert``: the findings of a real analysis (the sample flow logs, local engine)
go out through the alert channels once, and a second run of the same analysis is deduplicated."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.adapters.analytics_files import SAMPLE_CONFIG
from shared.cli import main
from shared.local.azurite import Azurite
from shared.sample.estate import ESTATE_JSON_PATH, load_estate
from shared.sample.flowlogs import generate_flow_logs
from shared.services.demo import DEMO_START
from tests.fakes.notify import FakeNotify


def test_analyze_routes_its_findings_once(fake: FakeNotify, azurite: Azurite, table_name: str,
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    flow_dir = tmp_path / "flowlogs"
    generate_flow_logs(load_estate(ESTATE_JSON_PATH), flow_dir, start=DEMO_START, hours=1,
                       seed=7)
    config = tmp_path / "alerts.yaml"
    config.write_text("version: 1\nchannels:\n  teams: {enabled: true}\nroutes:\n"
                      "  - {detections: ['*'], min_severity: high, teams: true}\n",
                      encoding="utf-8")
    monkeypatch.setenv("ZTS_TEAMS_WEBHOOK_URL", fake.webhook_url)
    monkeypatch.setenv("ZTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_ALERT_STATE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("ZTS_ALERT_TABLE", table_name)
    argv = ["analyze", "--snapshot", str(ESTATE_JSON_PATH), "--flow-logs", str(flow_dir),
            "--config", str(SAMPLE_CONFIG), "--alert", str(config), "--json"]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out, err) == 1  # findings
    findings = json.loads(out.getvalue())["findings"]
    high = [f for f in findings if f["severity"] in {"high", "critical"}]
    assert high and len(fake.cards) == len(high)
    assert main(argv, io.StringIO(), io.StringIO()) == 1
    assert len(fake.cards) == len(high)  # the same incidents: suppressed, not sent again
