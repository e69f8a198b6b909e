"""``zts alerts check|test|route`` through a parser of our own (shared/cli.py wires the same
``add_alert_commands``), with settings in the environment, the HTTPS fake and Azurite."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from shared.cli_alerts import add_alert_commands
from shared.local.azurite import Azurite
from tests.alerts.conftest import CONFIG_YAML, make_finding
from tests.fakes.notify import WEBHOOK_SECRET, FakeNotify


def zts(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="zts")
    add_alert_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code: int = args.handler(args, out, err)
    assert WEBHOOK_SECRET not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def settings(fake: FakeNotify, monkeypatch: pytest.MonkeyPatch) -> FakeNotify:
    for name in ("ZTS_ACS_ENDPOINT", "ZTS_STORAGE_TABLE_ENDPOINT",
                 "ZTS_ALERT_STATE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZTS_TEAMS_WEBHOOK_URL", fake.webhook_url)
    monkeypatch.setenv("ZTS_ACS_CONNECTION_STRING", fake.acs_connection_string)
    monkeypatch.setenv("ZTS_EMAIL_SENDER", "alerts@contoso.com")
    monkeypatch.setenv("ZTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("ZTS_LRO_POLL_SECONDS", "0.01")
    return fake


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path


@pytest.fixture
def stored(azurite: Azurite, table_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTS_ALERT_STATE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("ZTS_ALERT_TABLE", table_name)


def test_check(config_file: Path, tmp_path: Path) -> None:
    assert zts("alerts", "check", "--config", str(config_file)) == (
        0, f"{config_file}: ok (2 route(s); email on, teams on)\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: {teams: {url: x}}\nroutes: [{teams: maybe}]\n", encoding="utf-8")
    code, out, err = zts("alerts", "check", "--config", str(bad))
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == f"zts: 2 error(s) in {bad}; nothing was done"
    assert f"error: {bad}:1: channels.teams.url: unknown key 'url'" in err
    assert zts("alerts", "check", "--config", str(tmp_path / "missing.yaml"))[0] == 2


def test_test_teams_and_email(settings: FakeNotify, config_file: Path) -> None:
    assert zts("alerts", "test", "--channel", "teams") == (
        0, "teams: test alert accepted by the webhook\n", "")
    (card,) = settings.cards
    assert card["attachments"][0]["content"]["body"][0]["text"] == "Test alert · INFORMATIONAL"
    code, out, err = zts("alerts", "test", "--channel", "email", "--config", str(config_file))
    assert code == 0 and out.startswith("email: test alert accepted for secops@contoso.com")
    assert settings.emails[0]["recipients"]["to"] == [{"address": "secops@contoso.com"}]
    assert settings.emails[0]["content"]["subject"].startswith("[zts] Test alert:")


def test_test_email_with_managed_identity(settings: FakeNotify,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZTS_ACS_CONNECTION_STRING")
    monkeypatch.setenv("ZTS_ACS_ENDPOINT", settings.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{settings.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", settings.ca_path)
    code, _, err = zts("alerts", "test", "--channel", "email", "--to", "me@contoso.com")
    assert code == 0, err
    token = next(r for r in settings.requests if r.path == "/msi/token")
    assert token.query["resource"] == "https://communication.azure.com/"
    assert settings.requests[-1].headers["authorization"] == "Bearer fake-token"


def test_recipients_setting(settings: FakeNotify, config_file: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTS_EMAIL_RECIPIENTS", "soc@contoso.com; net@contoso.com,")
    code, out, err = zts("alerts", "test", "--channel", "email")
    assert code == 0, err
    assert out.startswith("email: test alert accepted for soc@contoso.com, net@contoso.com")
    assert settings.emails[-1]["recipients"]["to"] == [
        {"address": "soc@contoso.com"}, {"address": "net@contoso.com"}]
    # a file without addresses takes the setting's; one with addresses keeps its own
    bare = tmp_path / "bare.yaml"
    bare.write_text("channels: {email: {}}\nroutes: [{email: true}]\n", encoding="utf-8")
    assert zts("alerts", "check", "--config", str(bare))[0] == 0
    zts("alerts", "test", "--channel", "email", "--config", str(config_file))
    assert settings.emails[-1]["recipients"]["to"] == [{"address": "secops@contoso.com"}]
    monkeypatch.setenv("ZTS_EMAIL_RECIPIENTS", "soc@contoso.com,not-an-address")
    code, _, err = zts("alerts", "test", "--channel", "email")
    assert code == 2
    assert "ZTS_EMAIL_RECIPIENTS address 'not-an-address'" in err
    code, _, err = zts("alerts", "check", "--config", str(bare))
    assert code == 2 and "ZTS_EMAIL_RECIPIENTS address 'not-an-address'" in err


def test_test_reports_bad_settings_and_failures(settings: FakeNotify,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZTS_EMAIL_RECIPIENTS", raising=False)
    code, _, err = zts("alerts", "test", "--channel", "email")
    assert code == 2 and "no recipient" in err
    settings.add_fault("POST", "/invoke", 400)
    code, _, err = zts("alerts", "test", "--channel", "teams")
    assert code == 1 and "zts: teams: the webhook answered HTTP 400 Bad Request" in err
    monkeypatch.setenv("ZTS_TEAMS_WEBHOOK_URL", settings.webhook_url.replace("https", "http"))
    code, _, err = zts("alerts", "test", "--channel", "teams")
    assert code == 2 and "must be an https URL" in err
    monkeypatch.delenv("ZTS_TEAMS_WEBHOOK_URL")
    assert zts("alerts", "test", "--channel", "teams")[0] == 2
    monkeypatch.delenv("ZTS_EMAIL_SENDER")
    code, _, err = zts("alerts", "test", "--channel", "email", "--to", "a@contoso.com")
    assert code == 2 and "ZTS_EMAIL_SENDER" in err


def write_findings(path: Path, *findings: object) -> Path:
    path.write_text(json.dumps({"findings": findings}), encoding="utf-8")
    return path


def test_route_deduplicates_across_invocations(settings: FakeNotify, stored: None,
                                               config_file: Path, tmp_path: Path) -> None:
    high = make_finding()
    low = make_finding(severity="low", identity=("low one",))
    path = write_findings(tmp_path / "f.json", high.as_dict(), low.as_dict())
    code, out, err = zts("alerts", "route", "--findings", str(path), "--config", str(config_file))
    assert code == 0, err
    assert f"[high] risky_region {high.fingerprint[:12]}: email sent (new); teams sent (new)" in out
    assert "digest via email: sent, 1 finding(s)" in out
    assert len(settings.emails) == 2 and len(settings.cards) == 1
    code, out, _ = zts("alerts", "route", "--findings", str(path), "--config", str(config_file),
                       "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] and document["counts"] == {
        "email": {"suppressed": 2}, "teams": {"suppressed": 1}}
    assert len(settings.emails) == 2
    later = write_findings(tmp_path / "g.json", low.as_dict())
    code, out, _ = zts("alerts", "route", "--findings", str(later), "--config", str(config_file),
                       "--resolve", "--checked", "risky_region", "--json")
    assert code == 0 and json.loads(out)["resolutions"] == []  # inside the 1h grace period


def test_route_refuses_malformed_findings(settings: FakeNotify, stored: None, config_file: Path,
                                          tmp_path: Path) -> None:
    good = make_finding().as_dict()
    path = write_findings(tmp_path / "f.json", good, {**good, "severity": "urgent"}, "oops",
                          {**good, "observedAt": "yesterday", "colour": "red"})
    code, out, err = zts("alerts", "route", "--findings", str(path), "--config", str(config_file))
    assert code == 2 and out == "" and settings.emails == [] and settings.cards == []
    assert f"error: {path}: findings[1].severity: \"urgent\" is not one of" in err
    assert f"error: {path}: findings[2]: expected an object, got str" in err
    assert f"error: {path}: findings[3].colour: unknown key" in err
    assert f"error: {path}: findings[3].observedAt: \"yesterday\" is not an ISO 8601" in err
    assert err.splitlines()[-1] == (f"zts: 4 problem(s) in 3 of 4 finding(s) of {path}; nothing "
                                    "was routed")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    code, _, err = zts("alerts", "route", "--findings", str(tmp_path / "bad.json"), "--config",
                       str(config_file))
    assert code == 2 and "not valid JSON" in err


def test_route_needs_a_state_store(settings: FakeNotify, config_file: Path,
                                   tmp_path: Path) -> None:
    path = write_findings(tmp_path / "f.json", make_finding().as_dict())
    code, _, err = zts("alerts", "route", "--findings", str(path), "--config", str(config_file))
    assert code == 2 and "ZTS_ALERT_STATE_CONNECTION_STRING" in err and settings.emails == []


def test_route_reports_a_failing_channel(settings: FakeNotify, stored: None, config_file: Path,
                                         tmp_path: Path) -> None:
    settings.add_fault("POST", "/invoke", 400)
    path = write_findings(tmp_path / "f.json", make_finding().as_dict())
    code, out, err = zts("alerts", "route", "--findings", str(path), "--config", str(config_file))
    assert code == 1 and "email sent (new); teams failed (new)" in out
    assert "channel teams: 1 failed delivery(ies): the webhook answered HTTP 400" in err
    assert out.splitlines()[-1] == "alerts: FAILED (email: sent=1, teams: failed=1)"
