"""The alert configuration loader: a full example, and every kind of mistake reported at once
with its place, line and a useful message."""

from __future__ import annotations

from datetime import time, timedelta

from shared.alerts.config_loader import load_alert_config, recipients_alert_config

FULL = """
version: 1
channels:
  email:
    to: [secops@contoso.com, SOC@Contoso.com]
  teams:
    enabled: true
routes:
  - name: critical everywhere
    detections: [malicious, risky_region]
    min_severity: high
    email: [oncall@contoso.com]
    teams: true
  - detections: ["*"]
    severities: [informational, low, medium]
    email: true
suppression:
  default: 12h
  detections: {drift: 1h30m}
quiet_hours:
  start: 22:00
  end: "07:00"
  timezone: Europe/Paris
  hold: [low, medium]
digest:
  severities: [low]
  max_items: 20
resolution:
  notify: false
  after: 2h
remediation:
  drift: Ask the network team.
"""


def test_full_configuration_is_read() -> None:
    loaded = load_alert_config(FULL, "alerts.yaml")
    assert loaded.errors == () and loaded.warnings == ()
    config = loaded.config
    assert config is not None
    first, second = config.routes
    assert first.name == "critical everywhere" and first.email == ("oncall@contoso.com",)
    assert first.severities == {"high", "critical"} and first.teams
    assert second.name == "routes[1]" and second.detections == {"*"}
    assert second.email == ("secops@contoso.com", "SOC@Contoso.com")
    assert config.window("drift") == timedelta(hours=1, minutes=30)
    assert config.window("malicious") == timedelta(hours=12)
    assert config.quiet_hours is not None
    quiet = config.quiet_hours
    assert (quiet.start, quiet.end) == (time(22), time(7))  # 22:00 unquoted is a time, not 1320
    assert config.quiet_hours.hold == {"low", "medium"}
    assert config.digest_severities == {"low"} and config.digest_max_items == 20
    assert not config.notify_resolution and config.resolve_after == timedelta(hours=2)
    assert config.remediation == {"drift": "Ask the network team."}


def test_every_problem_is_reported_with_place_and_line() -> None:
    text = """channels:
  email:
    to: [secops@contoso.com, not-an-address]
    sender: alerts@contoso.com
  teams:
    webhook_url: https://prod-01.westeurope.logic.azure.com/workflows/x?sig=abc
routes:
  - detections: [risky_region]
    min_severity: urgent
    email: true
    colour: red
  - email: false
suppression: {default: 24 hours}
quiet_hours: {start: "25:00", end: "07:00", timezone: Mars/Olympus, hold: [high]}
digest: {max_items: 0}
"""
    loaded = load_alert_config(text, "alerts.yaml")
    assert loaded.config is None
    messages = [str(e) for e in loaded.errors]
    expected = [
        "alerts.yaml:3: channels.email.to[1]: 'not-an-address' is not an email address",
        "alerts.yaml:4: channels.email.sender: unknown key 'sender' (allowed here: to); the "
        "sender address comes from the ZTS_EMAIL_SENDER setting",
        "alerts.yaml:6: channels.teams.webhook_url: unknown key 'webhook_url' (allowed here: "
        "enabled); the Teams webhook URL is a secret",
        "alerts.yaml:9: routes[0].min_severity: 'urgent' is not one of",
        "alerts.yaml:11: routes[0].colour: unknown key 'colour' (allowed here: detections, "
        "email, min_severity, name, severities, teams)",
        "alerts.yaml:12: routes[1]: the route sends nowhere",
        "alerts.yaml:13: suppression.default: '24 hours' is not a duration",
        "alerts.yaml:14: quiet_hours.start: '25:00' is not a time of day",
        "alerts.yaml:14: quiet_hours.timezone: 'Mars/Olympus' is not an IANA time zone",
        "alerts.yaml:14: quiet_hours.hold[0]: 'high' is not one of 'informational', 'low' or "
        "'medium'",
        "alerts.yaml:15: digest.max_items: Input should be greater than or equal to 1",
    ]
    for want in expected:
        assert any(m.startswith(want) for m in messages), (want, messages)
    assert len(messages) == len(expected)
    assert not any("abc" in m for m in messages)  # the secret itself is never echoed


def test_cross_checks_and_warnings() -> None:
    text = """channels:
  email: {}
routes:
  - detections: [risky_regoin]
    email: true
  - teams: true
"""
    loaded = load_alert_config(text, "a.yaml")
    assert [str(e) for e in loaded.errors] == [
        "a.yaml:5: routes[0].email: the route sends email to the default recipients but "
        "channels.email.to is empty: list addresses here or there, or set ZTS_EMAIL_RECIPIENTS",
        "a.yaml:6: routes[1].teams: the route posts to Teams but channels.teams is not "
        "configured or disabled",
    ]
    assert [str(w).split(" is not")[0] for w in loaded.warnings] == [
        "a.yaml:4: routes[0].detections[0]: detection 'risky_regoin'"]


def test_yaml_level_problems() -> None:
    assert str(load_alert_config("", "a.yaml").errors[0]) == "a.yaml:1: the configuration is empty"
    assert "must be a mapping" in str(load_alert_config("- a\n- b\n").errors[0])
    bad = load_alert_config("channels: {email: {to: [a@b.co]}\nroutes: [", "a.yaml")
    assert bad.config is None and "not valid YAML" in str(bad.errors[0])
    duplicate = load_alert_config("channels: {teams: {}}\nroutes: [{teams: true}]\n"
                                  "routes: [{teams: true}]\n", "a.yaml")
    assert str(duplicate.errors[0]) == ("a.yaml:3: routes: duplicate key 'routes' (the first is "
                                        "at line 2)")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True))
    assert "more than 20000 values" in str(load_alert_config(bomb).errors[0])
    assert "larger than" in str(load_alert_config("#" * 300_000).errors[0])


def test_type_mismatch_says_what_was_expected() -> None:
    loaded = load_alert_config("channels: {email: {to: [a@b.co]}}\nroutes:\n  - email: yes-please\n"
                               "digest: {max_items: '5'}\n", "a.yaml")
    assert [str(e) for e in loaded.errors] == [
        "a.yaml:3: routes[0].email: expected bool or list, got str 'yes-please'",
        "a.yaml:4: digest.max_items: input should be a valid integer, got str '5'",
    ]


def test_recipients_setting_fills_an_email_channel_without_addresses() -> None:
    text = "channels:\n  email: {}\nroutes:\n  - {email: true, min_severity: high}\n"
    loaded = load_alert_config(text, "a.yaml", ["soc@example.com", "net@example.org"])
    assert loaded.errors == ()
    assert loaded.config is not None
    assert loaded.config.default_recipients == ("soc@example.com", "net@example.org")
    assert [route.email for route in loaded.config.routes] == [
        ("soc@example.com", "net@example.org")]
    # addresses written in the file win over the setting
    listed = load_alert_config("channels: {email: {to: [a@example.com]}}\n"
                               "routes: [{email: true}]\n", "a.yaml", ["soc@example.com"])
    assert listed.config is not None
    assert listed.config.routes[0].email == ("a@example.com",)


def test_recipients_setting_alone_routes_every_finding_by_email() -> None:
    loaded = recipients_alert_config(["soc@example.com"])
    assert loaded.errors == ()
    config = loaded.config
    assert config is not None and config.email_enabled and not config.teams_enabled
    (route,) = config.routes
    assert route.name == "ZTS_EMAIL_RECIPIENTS" and route.email == ("soc@example.com",)
    assert route.detections == frozenset({"*"})
    assert route.severities == frozenset({"informational", "low", "medium", "high", "critical"})
    assert config.digest_severities == frozenset({"informational", "low"})


def test_bad_recipients_are_each_named() -> None:
    loaded = recipients_alert_config(["soc@example.com", "not-an-address", "x"])
    assert loaded.config is None
    assert [str(e) for e in loaded.errors] == [
        "app settings: ZTS_EMAIL_RECIPIENTS address 'not-an-address': 'not-an-address' is not "
        "an email address",
        "app settings: ZTS_EMAIL_RECIPIENTS address 'x': 'x' is not an email address",
    ]
    too_many = recipients_alert_config([f"u{i}@example.com" for i in range(51)])
    assert too_many.config is None
    assert str(too_many.errors[0]).startswith(
        "app settings: ZTS_EMAIL_RECIPIENTS lists 51 addresses: List should have at most 50")
    in_file = load_alert_config("channels: {email: {}}\nroutes: [{email: true}]\n", "a.yaml",
                                ["bad"])
    assert in_file.config is None
    assert [str(e) for e in in_file.errors] == [
        "a.yaml:1: channels.email: ZTS_EMAIL_RECIPIENTS address 'bad': 'bad' is not an email "
        "address"]
