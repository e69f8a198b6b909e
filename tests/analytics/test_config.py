"""The analytics configuration: every key validated, unknown keys are errors with location."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from shared.adapters.analytics_files import SAMPLE_CONFIG, load_analytics_config
from shared.analytics.catalog import expand_pairs
from shared.analytics.config import load_config, parse_threat_list
from shared.sample.flowlogs import PUBLIC_ENDPOINTS, SUGGESTED_RISKY_COUNTRIES, EndpointRole


def test_unknown_and_invalid_keys_name_their_location() -> None:
    text = ("risky_countries: [KP, Korea]\n"
            "malicious_ips: [203.0.113.66, nope]\n"
            "cross_subscription:\n"
            "  allowed_pairs:\n"
            "    - {src: abc, dts: def}\n"
            "enrichment:\n"
            "  contries: {}\n"
            "  interval_minutes: 15\n"
            "expected_services: {hub-vnet: [Storage]}\n"
            "expected_services: {}\n")
    loaded = load_config(text, "c.yaml")
    assert loaded.config is None
    got = [(e.path, e.line) for e in loaded.errors]
    assert ("risky_countries[1]", 1) in got
    assert ("malicious_ips[1]", 2) in got
    assert ("cross_subscription.allowed_pairs[0].dts", 5) in got
    assert ("cross_subscription.allowed_pairs[0].dst", 5) in got
    assert ("enrichment.contries", 7) in got
    assert ("enrichment.interval_minutes", 8) in got
    assert ("expected_services", 10) in got  # duplicate key
    messages = {e.path: e.message for e in loaded.errors}
    assert messages["enrichment.contries"] == "unknown key"
    assert str(loaded.errors[0]).startswith("c.yaml:1: risky_countries[1]:")


def test_defaults_and_normalisation() -> None:
    config = load_config("risky_countries: [kp, IR, KP]\n").config
    assert config is not None
    assert config.risky_countries == ("IR", "KP")
    assert config.expected_services is None  # learning mode
    assert config.interval_minutes == 10
    assert load_config("").config == load_config("{}").config
    assert load_config("[1, 2]").config is None
    assert load_config("a: [").errors[0].message.startswith("not valid YAML")


def test_ipv6_is_refused_explicitly() -> None:
    loaded = load_config("malicious_ips: ['2001:db8::1']\n")
    assert loaded.config is None
    assert "IPv6" in loaded.errors[0].message


def test_threat_lists_report_bad_lines() -> None:
    entries, issues = parse_threat_list("# c\n203.0.113.66,C2,beacon\n\nbad\n198.51.100.0/24\n",
                                        "t.txt")
    assert [(str(e.network), e.threat_type) for e in entries] == [
        ("203.0.113.66/32", "C2"), ("198.51.100.0/24", "Listed")]
    assert [(i.line, i.source) for i in issues] == [(4, "t.txt")]


def test_missing_threat_list_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("threat_lists: [missing.txt]\n")
    loaded = load_analytics_config(config)
    assert loaded.config is None
    assert loaded.errors[0].path == "threat_lists[0]"


def test_sample_config_is_built_from_public_endpoints() -> None:
    loaded = load_analytics_config(SAMPLE_CONFIG)
    config = loaded.config
    assert config is not None, loaded.errors
    assert config.risky_countries == SUGGESTED_RISKY_COUNTRIES
    overrides = {str(n.network_address): c for n, c in config.country_overrides}
    assert overrides == {e.ip: e.country for e in PUBLIC_ENDPOINTS}
    threats = {str(t.network.network_address): t.threat_type for t in config.threats}
    assert threats == {e.ip: e.threat for e in PUBLIC_ENDPOINTS if e.threat}
    assert all(ip_network(e.ip).subnet_of(ip_network("192.0.2.0/24"))
               for e in PUBLIC_ENDPOINTS if e.role == EndpointRole.AZURE_SERVICE)


def test_wildcard_pairs_expand_over_known_subscriptions() -> None:
    assert expand_pairs([("A", "*"), ("*", "b")], ["A", "b", "c"]) == (
        ("a", "b"), ("a", "c"), ("c", "b"))
