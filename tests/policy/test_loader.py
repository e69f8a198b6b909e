"""The policy loader: valid files become the expected Policy; every error class is reported with its
code, path and line, all at once; hostile YAML is an error, never a crash; the JSON Schema is
deterministic and accepts what the loader accepts."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.policy import loader as loader_module
from shared.policy.loader import (
    ISSUE_CODES,
    PolicyIssue,
    PolicyLoad,
    load_policy,
    load_policy_file,
    policy_json_schema,
)
from shared.policy.model import (
    ALL_PORTS,
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    EnforcementPoint,
    Group,
    InboundPosture,
    NotOf,
    OutboundPosture,
    Ownership,
    Policy,
    PortRange,
    Posture,
    Protocol,
    ResourceGroupSelector,
    Rule,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "policy"
SAMPLE = DATA / "issue3-example.yaml"
HDI_VNET = (
    "/subscriptions/3f2c9a4e-8b1d-4c6a-9e7f-2d5b8a1c0e93/resourceGroups/rg-hdi-prod"
    "/providers/Microsoft.Network/virtualNetworks/hdi-vnet"
)


def triples(issues: tuple[PolicyIssue, ...]) -> list[tuple[str, str, int | None]]:
    return [(i.code, i.path, i.line) for i in issues]


# -- the issue 3 example ----------------------------------------------------------------------


def test_issue3_example_loads_into_the_expected_policy() -> None:
    loaded = load_policy_file(SAMPLE)

    assert loaded.errors == ()
    assert loaded.policy == Policy(
        posture=Posture(InboundPosture.DEFAULT_DENY, OutboundPosture.ALLOW),
        enforcement=EnforcementPoint.SUBNET,
        groups=(
            Group("web", AsgSelector("Web"), line=8),
            Group("logic", AllOf((AsgSelector("Logic"), VnetSelector("payroll-vnet"))), line=9),
            Group(
                "sap",
                AllOf((TagsSelector((("app", "sap"),)), SubscriptionSelector("erp-prod"))),
                line=10,
            ),
            Group(
                "analytics",
                AnyOf((VnetSelector(HDI_VNET), SubnetSelector("hub-vnet/analytics"))),
                line=11,
            ),
            Group("not-prod", NotOf(TagsSelector((("env", "prod"),))), line=12),
        ),
        rules=(
            Rule("internet-to-web", 100, "internet", "web",
                 (PortRange(80, 80), PortRange(443, 443)), Protocol.TCP, Action.ALLOW, line=14),
            Rule("logic-to-sap", 110, "logic", "sap", (PortRange(1433, 1433),), Protocol.TCP,
                 Action.ALLOW, line=15),
        ),
        ownership=Ownership(100, 3999, "zts-"),
    )
    # a negative-only group and an Internet-facing allow are worth a reviewer's look
    assert triples(loaded.warnings) == [
        ("ZTS-P102", "groups.not-prod", 12),
        ("ZTS-P103", "rules[0].from", 14),
    ]


def test_defaults_sorting_and_normalisation() -> None:
    loaded = load_policy(
        "apiVersion: zts/v1\n"
        "groups:\n"
        "  db: {cidr: [198.51.100.0/24, '2001:db8::/48', 198.51.100.0/24]}\n"
        "  app: {resourceGroup: 3f2c9a4e-8b1d-4c6a-9e7f-2d5b8a1c0e93/rg-app}\n"
        "  tagged: {tags: {owner: '*', env: prod}}\n"
        "rules:\n"
        "  - {name: late, priority: 300, from: Internet, to: app, ports: any, protocol: icmp,"
        " action: deny}\n"
        "  - {name: early, priority: 5, from: app, to: Sql.WestEurope,"
        " ports: [443, 80, 81, '82-90', 85], protocol: tcp, action: allow}\n"
    )
    policy = loaded.policy
    assert policy is not None, loaded.errors
    assert policy.posture == Posture()
    assert policy.enforcement is EnforcementPoint.SUBNET
    assert policy.ownership == Ownership()
    assert [g.name for g in policy.groups] == ["db", "app", "tagged"]
    assert policy.groups[0].selector == CidrSelector((
        ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8::/48")))
    assert policy.groups[1].selector == ResourceGroupSelector(
        "3f2c9a4e-8b1d-4c6a-9e7f-2d5b8a1c0e93/rg-app")
    assert policy.groups[2].selector == TagsSelector((("env", "prod"), ("owner", "*")))
    early, late = policy.rules
    assert (early.name, early.line, late.name, late.line) == ("early", 8, "late", 7)
    assert early.ports == (PortRange(80, 90), PortRange(443, 443))
    assert early.destination == "Sql.WestEurope"
    assert late.source == "internet" and late.ports == ALL_PORTS


def test_policy_options_are_read() -> None:
    loaded = load_policy(
        "apiVersion: zts/v1\n"
        "posture: {inbound: observe, outbound: default-deny}\n"
        "enforcement: both\n"
        "ownership: {band: [200, 2999], prefix: corp.zts_}\n"
    )
    assert loaded.policy == Policy(
        Posture(InboundPosture.OBSERVE, OutboundPosture.DEFAULT_DENY),
        EnforcementPoint.BOTH, (), (), Ownership(200, 2999, "corp.zts_"),
    )


def test_issue_str_names_file_line_path_and_code() -> None:
    loaded = load_policy(
        "apiVersion: zts/v1\nrules:\n  - {name: a, priority: 1, from: any, to: AzureCloud,"
        " ports: [70000], protocol: tcp, action: deny}\n",
        source="policy.yaml",
    )
    assert [str(e) for e in loaded.errors] == [
        "policy.yaml:3: rules[0].ports[0]: port 70000 is out of range 0-65535 (ZTS-P035)"
    ]
    assert loaded.policy is None and not loaded.ok
    assert str(PolicyIssue("ZTS-P001", "gone", "", None, "p.yaml")) == "p.yaml: gone (ZTS-P001)"


# -- every error class: exactly its code, path and line ----------------------------------------
# Base document; a case adds one line: a group at line 5 or a rule / top-level key at line 7.

BASE_GROUPS = "apiVersion: zts/v1\ngroups:\n  web: {asg: Web}\n  db: {asg: Db}\n"
BASE_RULES = (
    "rules:\n  - {name: web-to-db, priority: 100, from: web, to: db, ports: [1433],"
    " protocol: tcp, action: allow}\n"
)
OK_RULE = "name: r, priority: 200, from: web, to: db, ports: [80], protocol: tcp, action: allow"


def with_group(entry: str) -> str:
    return BASE_GROUPS + f"  {entry}\n" + BASE_RULES


def with_rule(**changes: str | None) -> str:
    fields = dict(part.split(": ", 1) for part in OK_RULE.split(", "))
    for name, value in changes.items():
        key = name.rstrip("_")  # from_ -> from
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return BASE_GROUPS + BASE_RULES + "  - {" + ", ".join(f"{k}: {v}" for k, v in
                                                       fields.items()) + "}\n"


def with_top(line: str) -> str:
    return BASE_GROUPS + BASE_RULES + line + "\n"


VNET_ID = HDI_VNET
NSG_ID = HDI_VNET.replace("virtualNetworks/hdi-vnet", "networkSecurityGroups/nsg-web")

ERROR_CASES: list[tuple[str, str, str, str, int]] = [
    # (id, document, code, path, line)
    ("unknown-top-key", with_top("colour: blue"), "ZTS-P010", "colour", 7),
    ("unknown-rule-key", with_rule(colour="blue"), "ZTS-P010", "rules[1].colour", 7),
    ("unknown-selector-key", with_group("app: {vnett: x}"), "ZTS-P010", "groups.app.vnett", 5),
    ("missing-ports", with_rule(ports=None), "ZTS-P011", "rules[1].ports", 7),
    ("null-ports", with_rule(ports="null"), "ZTS-P011", "rules[1].ports", 7),
    ("missing-action", with_rule(action=None), "ZTS-P011", "rules[1].action", 7),
    ("missing-api-version", BASE_GROUPS.replace("apiVersion: zts/v1\n", "") + BASE_RULES,
     "ZTS-P011", "apiVersion", 1),
    ("null-selector-value", with_group("app: {vnet: null}"), "ZTS-P011", "groups.app", 5),
    ("priority-as-text", with_rule(priority="'200'"), "ZTS-P012", "rules[1].priority", 7),
    ("tag-value-bool", with_group("app: {tags: {critical: yes}}"), "ZTS-P012",
     "groups.app.tags.critical", 5),
    ("group-null", with_group("app:"), "ZTS-P012", "groups.app", 5),
    ("ports-scalar", with_rule(ports="443"), "ZTS-P012", "rules[1].ports", 7),
    ("protocol-upper", with_rule(protocol="TCP"), "ZTS-P013", "rules[1].protocol", 7),
    ("action-permit", with_rule(action="permit"), "ZTS-P013", "rules[1].action", 7),
    ("posture", with_top("posture: {inbound: deny}"), "ZTS-P013", "posture.inbound", 7),
    ("enforcement", with_top("enforcement: vm"), "ZTS-P013", "enforcement", 7),
    ("api-version", with_top("").replace("zts/v1", "zts/v2"), "ZTS-P014", "apiVersion", 1),
    ("group-name-case", with_group("App: {asg: App}"), "ZTS-P020", "groups.App", 5),
    ("group-name-long", with_group(f"{'a' * 41}: {{asg: App}}"), "ZTS-P020",
     f"groups.{'a' * 41}", 5),
    ("group-shadows-any", with_group("any: {asg: App}"), "ZTS-P021", "groups.any", 5),
    ("group-shadows-internet", with_group("internet: {cidr: 0.0.0.0/0}"), "ZTS-P021",
     "groups.internet", 5),
    ("selector-two-keys", with_group("app: {asg: App, vnet: v}"), "ZTS-P022", "groups.app", 5),
    ("selector-empty", with_group("app: {}"), "ZTS-P022", "groups.app", 5),
    ("nested-selector-empty", with_group("app: {all: [{asg: A}, {}]}"), "ZTS-P022",
     "groups.app.all[1]", 5),
    ("subnet-without-vnet", with_group("app: {subnet: app-subnet}"), "ZTS-P023",
     "groups.app.subnet", 5),
    ("vnet-id-of-nsg", with_group(f"app: {{vnet: {NSG_ID}}}"), "ZTS-P023", "groups.app.vnet", 5),
    ("subnet-id-of-vnet", with_group(f"app: {{subnet: {VNET_ID}}}"), "ZTS-P023",
     "groups.app.subnet", 5),
    ("asg-bad-id", with_group("app: {asg: /subscriptions/}"), "ZTS-P023", "groups.app.asg", 5),
    ("asg-with-slash", with_group("app: {asg: rg/asg}"), "ZTS-P023", "groups.app.asg", 5),
    ("tags-empty", with_group("app: {tags: {}}"), "ZTS-P024", "groups.app.tags", 5),
    ("all-empty", with_group("app: {all: []}"), "ZTS-P024", "groups.app.all", 5),
    ("cidr-empty", with_group("app: {cidr: []}"), "ZTS-P024", "groups.app.cidr", 5),
    ("cidr-bad", with_group("app: {cidr: [10.0.0.0/8, 300.1.1.0/24]}"), "ZTS-P025",
     "groups.app.cidr[1]", 5),
    ("rule-name", with_rule(name="Web_To_Db"), "ZTS-P030", "rules[1].name", 7),
    ("rule-name-dup", with_rule(name="web-to-db"), "ZTS-P031", "rules[1].name", 7),
    ("priority-zero", with_rule(priority="0"), "ZTS-P032", "rules[1].priority", 7),
    ("priority-high", with_rule(priority="10001"), "ZTS-P032", "rules[1].priority", 7),
    ("priority-dup", with_rule(priority="100"), "ZTS-P033", "rules[1].priority", 7),
    ("group-typo", with_rule(to="dbb"), "ZTS-P034", "rules[1].to", 7),
    ("group-case", with_rule(from_="Web"), "ZTS-P034", "rules[1].from", 7),
    ("group-unknown", with_rule(to="payroll"), "ZTS-P034", "rules[1].to", 7),
    ("peer-not-a-token", with_rule(to="'web db'"), "ZTS-P034", "rules[1].to", 7),
    ("port-range", with_rule(ports="[70000]"), "ZTS-P035", "rules[1].ports[0]", 7),
    ("port-negative", with_rule(ports="[-1]"), "ZTS-P035", "rules[1].ports[0]", 7),
    ("port-reversed", with_rule(ports="[80, '90-80']"), "ZTS-P035", "rules[1].ports[1]", 7),
    ("port-text", with_rule(ports="[http]"), "ZTS-P035", "rules[1].ports[0]", 7),
    ("port-any-mixed", with_rule(ports="[any, 443]"), "ZTS-P035", "rules[1].ports", 7),
    ("ports-empty", with_rule(ports="[]"), "ZTS-P035", "rules[1].ports", 7),
    ("icmp-ports", with_rule(protocol="icmp", ports="[8]"), "ZTS-P036", "rules[1].ports", 7),
    ("any-proto-ports", with_rule(protocol="any", ports="[53]"), "ZTS-P036", "rules[1].ports", 7),
    ("band-order", with_top("ownership: {band: [3000, 200]}"), "ZTS-P040", "ownership.band", 7),
    ("band-azure", with_top("ownership: {band: [50, 200]}"), "ZTS-P040", "ownership.band", 7),
    ("band-length", with_top("ownership: {band: [200]}"), "ZTS-P040", "ownership.band", 7),
    ("prefix", with_top("ownership: {prefix: -zts}"), "ZTS-P041", "ownership.prefix", 7),
    ("prefix-long", with_top(f"ownership: {{prefix: {'z' * 21}}}"), "ZTS-P041",
     "ownership.prefix", 7),
    ("duplicate-group", with_group("web: {asg: Other}"), "ZTS-P003", "groups.web", 5),
    ("duplicate-rule-key", with_rule(name="r, name: s"), "ZTS-P003", "rules[1].name", 7),
    ("duplicate-top-key", with_top("apiVersion: zts/v1"), "ZTS-P003", "apiVersion", 7),
]


@pytest.mark.parametrize(
    ("text", "code", "path", "line"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_each_error_class_has_its_code_path_and_line(
    text: str, code: str, path: str, line: int
) -> None:
    loaded = load_policy(text)
    assert triples(loaded.errors) == [(code, path, line)]
    assert loaded.policy is None


def test_did_you_mean_suggests_the_group() -> None:
    typo = load_policy(with_rule(to="dbb")).errors[0].message
    case = load_policy(with_rule(from_="Web")).errors[0].message
    assert typo == "unknown group 'dbb' (did you mean 'db'?)"
    assert case == "unknown group 'Web' (did you mean 'web'?)"
    unknown = load_policy(with_rule(to="payroll")).errors[0].message
    assert unknown.startswith("unknown group 'payroll': define it under groups")


def test_unknown_key_lists_the_allowed_keys() -> None:
    rule = load_policy(with_rule(colour="blue")).errors[0].message
    selector = load_policy(with_group("app: {all: [{vnett: x}]}")).errors[0]
    assert rule == ("unknown key 'colour' (allowed: name, priority, from, to, ports, protocol, "
                    "action)")
    assert selector.path == "groups.app.all[0].vnett"
    assert "allowed: vnet, subnet, asg, resourceGroup, subscription, tags, cidr, all, any, not" in (
        selector.message)


def test_duplicate_key_names_the_first_line() -> None:
    loaded = load_policy(with_group("web: {asg: Other}"))
    assert loaded.errors[0].message == "duplicate key 'web' (first on line 3)"


# -- warnings ---------------------------------------------------------------------------------

WARNING_CASES: list[tuple[str, str, str, str, int]] = [
    ("cidr-host-bits", with_group("ext: {cidr: 203.0.113.9/24}"), "ZTS-P101", "groups.ext.cidr",
     5),
    ("cidr-host-bits-in-list", with_group("ext: {cidr: [203.0.113.0/24, 198.51.100.7/24]}"),
     "ZTS-P101", "groups.ext.cidr[1]", 5),
    ("negative-only", with_group("rest: {not: {asg: Web}}"), "ZTS-P102", "groups.rest", 5),
    ("negative-union", with_group("rest: {any: [{asg: A}, {not: {asg: B}}]}"), "ZTS-P102",
     "groups.rest", 5),
    ("internet-allow", with_rule(from_="internet"), "ZTS-P103", "rules[1].from", 7),
    ("any-allow", with_rule(from_="any"), "ZTS-P103", "rules[1].from", 7),
    ("opposite-overlap", with_rule(ports="['1000-2000']", action="deny"), "ZTS-P104",
     "rules[1]", 7),
    ("overlap-any-protocol", with_rule(ports="any", protocol="any", action="deny"), "ZTS-P104",
     "rules[1]", 7),
    ("repeat", with_rule(ports="[1433]"), "ZTS-P108", "rules[1]", 7),
    ("unknown-service-tag", with_rule(to="AzureLoadBalancr"), "ZTS-P106", "rules[1].to", 7),
    ("service-tag-case", with_rule(to="storage.WestEurope"), "ZTS-P107", "rules[1].to", 7),
]


@pytest.mark.parametrize(
    ("text", "code", "path", "line"),
    [case[1:] for case in WARNING_CASES],
    ids=[case[0] for case in WARNING_CASES],
)
def test_each_warning_class_has_its_code_path_and_line(
    text: str, code: str, path: str, line: int
) -> None:
    loaded = load_policy(text)
    assert loaded.errors == ()
    assert triples(loaded.warnings) == [(code, path, line)]
    assert loaded.policy is not None


def test_allow_to_external_ranges_warns_only_when_it_cannot_take_effect() -> None:
    group = "partner: {cidr: 192.0.2.0/24}"
    text = with_group(group) + "  - {" + OK_RULE.replace("to: db", "to: partner") + "}\n"
    assert triples(load_policy(text).warnings) == [("ZTS-P105", "rules[1].to", 8)]
    egress = text.replace("apiVersion: zts/v1\n", "apiVersion: zts/v1\nposture: "
                          "{outbound: default-deny}\n")
    assert load_policy(egress).warnings == ()


def test_overlap_warning_names_both_rules() -> None:
    loaded = load_policy(with_rule(ports="['1000-2000']", action="deny"))
    assert loaded.warnings[0].message == (
        "rule 'r' overlaps rule 'web-to-db' (priority 100, line 6) on tcp port 1433 with the "
        "opposite action; 'web-to-db' applies there"
    )


def test_known_tags_groups_and_builtins_resolve() -> None:
    loaded = load_policy(
        BASE_GROUPS + "  storage: {asg: Files}\n" + BASE_RULES
        + "  - {name: a, priority: 1, from: AzureLoadBalancer, to: web, ports: any, protocol: any,"
        " action: allow}\n"
        + "  - {name: b, priority: 2, from: web, to: Storage, ports: [443], protocol: tcp,"
        " action: allow}\n"
        + "  - {name: c, priority: 3, from: web, to: storage, ports: [445], protocol: tcp,"
        " action: allow}\n"
        + "  - {name: d, priority: 4, from: ANY, to: INTERNET, ports: any, protocol: any,"
        " action: deny}\n"
    )
    assert loaded.errors == ()
    # both resolve, but a group that is a tag's name but for the case is one typo from the tag
    assert [(w.code, w.path) for w in loaded.warnings] == [("ZTS-P109", "groups.storage")]
    assert loaded.policy is not None
    peers = [(r.source, r.destination) for r in loaded.policy.rules]
    assert peers == [("AzureLoadBalancer", "web"), ("web", "Storage"), ("web", "storage"),
                     ("any", "internet"), ("web", "db")]


# -- many errors, one load --------------------------------------------------------------------


def test_all_errors_are_reported_in_one_load_in_file_order() -> None:
    text = (
        "apiVersion: zts/v1\n"                                              # 1
        "enforcment: subnet\n"                                              # 2 P010
        "groups:\n"                                                         # 3
        "  Web: {asg: Web}\n"                                               # 4 P020
        "  ext: {cidr: 10.0.0.0/33}\n"                                      # 5 P025
        "  db: {asg: Db}\n"                                                 # 6
        "rules:\n"                                                          # 7
        "  - {name: a, priority: 1, from: ext, to: dbb, ports: [443], protocol: tcp,"
        " action: allow}\n"                                                 # 8 P034
        "  - {name: b, priority: 2, from: ext, to: db, ports: [99999], protocol: tcp,"
        " action: allow}\n"                                                 # 9 P035
    )
    loaded = load_policy(text, "policy.yaml")
    assert triples(loaded.errors) == [
        ("ZTS-P010", "enforcment", 2),
        ("ZTS-P020", "groups.Web", 4),
        ("ZTS-P025", "groups.ext.cidr[0]", 5),
        ("ZTS-P034", "rules[0].to", 8),
        ("ZTS-P035", "rules[1].ports[0]", 9),
    ]


def test_a_broken_rule_still_gets_its_cross_checks() -> None:
    """A rule with a bad port is still checked for a duplicate priority and an unknown group."""
    text = with_rule(priority="100", to="dbb", ports="[70000]")
    assert triples(load_policy(text).errors) == [
        ("ZTS-P033", "rules[1].priority", 7),
        ("ZTS-P034", "rules[1].to", 7),
        ("ZTS-P035", "rules[1].ports[0]", 7),
    ]


def test_unreadable_groups_do_not_cascade_into_unknown_group_errors() -> None:
    text = BASE_RULES.join(["apiVersion: zts/v1\ngroups: [web, db]\n", ""])
    assert triples(load_policy(text).errors) == [("ZTS-P012", "groups", 2)]


# -- hostile and broken input -----------------------------------------------------------------


def _billion_laughs() -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    return "\n".join(lines) + "\n"


HOSTILE: list[tuple[str, str, str]] = [
    ("empty", "", "ZTS-P004"),
    ("only-comments", "# nothing here\n", "ZTS-P004"),
    ("list-root", "- apiVersion: zts/v1\n", "ZTS-P004"),
    ("scalar-root", "zts/v1\n", "ZTS-P004"),
    ("billion-laughs", _billion_laughs(), "ZTS-P005"),
    ("deep-flow", "a: " + "[" * 100_000 + "]" * 100_000 + "\n", "ZTS-P005"),
    ("deep-block", "".join("  " * i + f"k{i}:\n" for i in range(200)), "ZTS-P005"),
    ("self-reference", "apiVersion: zts/v1\ngroups: &g {web: *g}\n", "ZTS-P005"),
    ("too-large", "# " + "x" * (4 * 1024 * 1024) + "\n", "ZTS-P005"),
    ("tabs", "apiVersion: zts/v1\ngroups:\n\tweb: {asg: Web}\n", "ZTS-P002"),
    ("unclosed", "apiVersion: zts/v1\ngroups: {web: {asg: Web}\n", "ZTS-P002"),
    ("two-documents", "apiVersion: zts/v1\n---\napiVersion: zts/v1\n", "ZTS-P002"),
    ("python-tag", "apiVersion: !!python/object/apply:os.system [echo]\n", "ZTS-P002"),
    ("set-tag", "apiVersion: zts/v1\ngroups: !!set {a, b}\n", "ZTS-P002"),
    ("control-char", "apiVersion: zts/v1\x07\n", "ZTS-P002"),
    ("complex-key", "? [a, b]\n: c\n", "ZTS-P002"),
    ("huge-int", "apiVersion: zts/v1\npriority: " + "9" * 5000 + "\n", "ZTS-P002"),
    ("bad-merge", "apiVersion: zts/v1\nposture: {<<: 1}\n", "ZTS-P002"),
]


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and with PyYAML's own (the fallback where libyaml is
    missing); both are real parsers."""
    if request.param == "pure-python":
        monkeypatch.setattr(loader_module, "FAST_LOADER", None)
    elif loader_module.FAST_LOADER is None:
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


@pytest.mark.parametrize(("text", "code"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_is_an_error_not_a_crash(text: str, code: str, yaml_parser: str) -> None:
    loaded = load_policy(text)
    assert loaded.policy is None
    assert [e.code for e in loaded.errors] == [code]
    assert loaded.errors[0].line is not None


def test_both_parsers_give_the_same_result(yaml_parser: str) -> None:
    loaded = load_policy_file(SAMPLE)
    assert loaded.policy is not None
    assert triples(loaded.warnings) == [("ZTS-P102", "groups.not-prod", 12),
                                        ("ZTS-P103", "rules[0].from", 14)]
    assert triples(load_policy(with_rule(priority="100", to="dbb", ports="[70000]")).errors) == [
        ("ZTS-P033", "rules[1].priority", 7),
        ("ZTS-P034", "rules[1].to", 7),
        ("ZTS-P035", "rules[1].ports[0]", 7),
    ]


def test_tab_error_explains_itself() -> None:
    error = load_policy("apiVersion: zts/v1\ngroups:\n\tweb: {asg: Web}\n").errors[0]
    assert error.line == 3
    assert "tab" in error.message


def test_yaml_merge_keys_work_and_explicit_keys_win() -> None:
    loaded = load_policy(
        "apiVersion: zts/v1\n"
        "rules:\n"
        "  - &base {name: x, priority: 1, from: any, to: AzureCloud, protocol: tcp,"
        " action: deny, ports: any}\n"
        "  - {<<: *base, name: y, priority: 2, ports: [443]}\n"
    )
    assert loaded.errors == ()
    assert loaded.policy is not None
    assert [(r.name, r.ports) for r in loaded.policy.rules] == [
        ("x", ALL_PORTS), ("y", (PortRange(443, 443),))]


def test_unreadable_value_is_reported_once() -> None:
    loaded = load_policy(with_group("app: {tags: {since: 2024-13-45}}"))
    assert triples(loaded.errors) == [("ZTS-P002", "groups.app.tags.since", 5)]


# -- files ------------------------------------------------------------------------------------


def test_unreadable_files_are_issues(tmp_path: Path) -> None:
    missing = load_policy_file(tmp_path / "nope.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("apiVersion: zts/v1 # caf\xe9\n".encode("latin-1"))
    directory = load_policy_file(tmp_path)
    for loaded in (missing, load_policy_file(latin1), directory):
        assert [e.code for e in loaded.errors] == ["ZTS-P001"]
        assert loaded.errors[0].line is None
    assert str(missing.errors[0]).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_file_with_bom_loads_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + with_rule(ports="[70000]").encode())
    loaded = load_policy_file(path)
    assert [str(e) for e in loaded.errors] == [
        f"{path}:7: rules[1].ports[0]: port 70000 is out of range 0-65535 (ZTS-P035)"
    ]


# -- the code table ---------------------------------------------------------------------------


def test_every_code_is_documented_and_used() -> None:
    source = "".join(
        (Path(__file__).resolve().parents[2] / "shared" / "policy" / name).read_text()
        for name in ("loader.py", "loader_checks.py", "schema.py")
    )
    used = set(re.findall(r'"(ZTS-P\d{3})"', source)) - {"ZTS-P0xx"}
    assert used == set(ISSUE_CODES)
    for code, text in ISSUE_CODES.items():
        assert text.startswith("error: " if code[5] == "0" else "warning: "), code


# -- JSON Schema ------------------------------------------------------------------------------


def _check(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "") -> list[str]:
    """A small JSON Schema (2020-12) checker for the keywords the policy schema uses."""
    if "$ref" in schema:
        return _check(root["$defs"][schema["$ref"].removeprefix("#/$defs/")], value, root, at)
    problems: list[str] = []
    if "anyOf" in schema and all(_check(s, value, root, at) for s in schema["anyOf"]):
        problems.append(f"{at}: matches no anyOf branch")
    if "not" in schema and not _check(schema["not"], value, root, at):
        problems.append(f"{at}: matches 'not'")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{at}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} not in enum")
    types = {"object": dict, "array": list, "string": str, "integer": int, "null": type(None)}
    expected = schema.get("type")
    if expected is not None and (not isinstance(value, types[expected]) or (
            expected == "integer" and isinstance(value, bool))):
        return [*problems, f"{at}: {value!r} is not {expected}"]
    if isinstance(value, dict):
        problems += _check_object(schema, value, root, at)
    elif isinstance(value, list):
        problems += _check_array(schema, value, root, at)
    elif isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{at}: too short")
    elif isinstance(value, int) and not (
            schema.get("minimum", value) <= value <= schema.get("maximum", value)):
        problems.append(f"{at}: {value} out of range")
    return problems


def _check_object(schema: dict[str, Any], value: dict[str, Any], root: dict[str, Any],
                  at: str) -> list[str]:
    problems = [f"{at}: missing {k}" for k in schema.get("required", []) if k not in value]
    if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", 1 << 30):
        problems.append(f"{at}: wrong number of keys")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if "propertyNames" in schema:
            problems += _check(schema["propertyNames"], key, root, f"{at}.{key}(name)")
        if key in properties:
            problems += _check(properties[key], item, root, f"{at}.{key}")
        elif extra is False:
            problems.append(f"{at}: unknown key {key}")
        elif isinstance(extra, dict):
            problems += _check(extra, item, root, f"{at}.{key}")
    return problems


def _check_array(schema: dict[str, Any], value: list[Any], root: dict[str, Any],
                 at: str) -> list[str]:
    problems = []
    if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 1 << 30):
        problems.append(f"{at}: wrong number of items")
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        sub = prefix[index] if index < len(prefix) else schema.get("items", {})
        if sub is False:
            problems.append(f"{at}[{index}]: not allowed")
        else:
            problems += _check(sub, item, root, f"{at}[{index}]")
    return problems


def test_json_schema_is_deterministic_and_2020_12() -> None:
    first = json.dumps(policy_json_schema(), sort_keys=True)
    assert first == json.dumps(policy_json_schema(), sort_keys=True)
    schema = policy_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["apiVersion"]
    assert set(schema["$defs"]) == {
        "OwnershipSpec", "PostureSpec", "RuleSpec", "SelectorSpec"}
    for definition in [schema, *schema["$defs"].values()]:
        assert definition["description"]
        for name, prop in definition["properties"].items():
            assert prop.get("description"), name


def test_json_schema_accepts_the_sample_and_rejects_mistakes() -> None:
    schema = policy_json_schema()
    sample = yaml.safe_load(SAMPLE.read_text())
    sample["ownership"] = {"band": [100, 3999], "prefix": "zts-"}
    sample["rules"][0]["ports"] = [80, "8000-8100"]
    sample["rules"].append({"name": "ping", "priority": 5, "from": "any", "to": "web",
                            "ports": "any", "protocol": "icmp", "action": "allow"})
    sample["groups"]["ext"] = {"cidr": "198.51.100.0/24"}
    sample["groups"]["partners"] = {"cidr": ["192.0.2.0/24", "2001:db8::/32"]}
    assert _check(schema, sample, schema) == []

    def broken(change: Any) -> list[str]:
        document = yaml.safe_load(SAMPLE.read_text())
        change(document)
        return _check(schema, document, schema)

    assert broken(lambda d: d.update(colour="blue"))
    assert broken(lambda d: d.update(apiVersion="zts/v2"))
    assert broken(lambda d: d["groups"].update(any={"asg": "x"}))
    assert broken(lambda d: d["groups"].update(Web={"asg": "x"}))
    assert broken(lambda d: d["groups"].update(two={"asg": "x", "vnet": "y"}))
    assert broken(lambda d: d["rules"][0].update(ports=[70000]))
    assert broken(lambda d: d["rules"][0].pop("ports"))
    assert broken(lambda d: d["rules"][0].update(priority=0))
    assert broken(lambda d: d.update(ownership={"band": [100, 200, 300]}))
    assert broken(lambda d: d["groups"].update(empty={"vnet": None}))
    assert broken(lambda d: d["groups"].update(empty={}))
    assert broken(lambda d: d["groups"].update(empty={"all": []}))
    assert broken(lambda d: d["groups"].update(empty={"cidr": []}))
    assert broken(lambda d: d["groups"].update(empty={"tags": {}}))


# -- property: generated valid policies load cleanly -------------------------------------------

NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
GROUP = st.from_regex(r"[a-z][a-z0-9-]{0,39}", fullmatch=True).filter(
    lambda n: n not in ("internet", "any"))
RULE_NAME = st.from_regex(r"[a-z0-9][a-z0-9-]{0,47}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


def _network(bits: int, address: int, length: int) -> str:
    cls = ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network
    return str(cls((address % (1 << bits), length % (bits + 1)), strict=False))


CIDR = st.builds(_network, st.sampled_from([32, 128]), st.integers(0, (1 << 128) - 1),
                 st.integers(0, 128))
LEAF = st.one_of(
    NAME.map(lambda n: {"vnet": n}),
    st.tuples(NAME, NAME).map(lambda t: {"subnet": f"{t[0]}/{t[1]}"}),
    NAME.map(lambda n: {"asg": n}),
    NAME.map(lambda n: {"resourceGroup": n}),
    NAME.map(lambda n: {"subscription": n}),
    st.just({"vnet": HDI_VNET}),
    st.dictionaries(TEXT.filter(bool), TEXT | st.just("*"), min_size=1, max_size=3).map(
        lambda d: {"tags": d}),
    st.lists(CIDR, min_size=1, max_size=3).map(lambda c: {"cidr": c}),
)
SELECTOR = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda s: {"all": s}),
        st.lists(inner, min_size=1, max_size=3).map(lambda s: {"any": s}),
        inner.map(lambda s: {"not": s}),
    ),
    max_leaves=6,
)
PORT = st.one_of(
    st.integers(0, 65535),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(
        lambda t: f"{min(t)}-{max(t)}"),
)
PORTS = st.one_of(st.just("any"), st.just(["any"]), st.lists(PORT, min_size=1, max_size=4))


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(GROUP, unique=True, max_size=5))
    peers = st.sampled_from([*names, "internet", "any", "Internet", "AzureLoadBalancer",
                             "Storage", "Sql.WestEurope", "VirtualNetwork"])
    count = draw(st.integers(0, 6))
    rule_names = draw(st.lists(RULE_NAME, unique=True, min_size=count, max_size=count))
    priorities = draw(st.lists(st.integers(1, 10000), unique=True, min_size=count,
                               max_size=count))
    rules = []
    for name, priority in zip(rule_names, priorities, strict=True):
        protocol = draw(st.sampled_from(["tcp", "udp", "icmp", "any"]))
        rules.append({
            "name": name, "priority": priority, "from": draw(peers), "to": draw(peers),
            "ports": "any" if protocol in ("icmp", "any") else draw(PORTS),
            "protocol": protocol, "action": draw(st.sampled_from(["allow", "deny"])),
        })
    low = draw(st.integers(100, 4095))
    document: dict[str, Any] = {
        "apiVersion": "zts/v1",
        "posture": {"inbound": draw(st.sampled_from(["default-deny", "observe"])),
                    "outbound": draw(st.sampled_from(["allow", "default-deny"]))},
        "enforcement": draw(st.sampled_from(["subnet", "nic", "both"])),
        "ownership": {"band": [low, draw(st.integers(low + 1, 4096))],
                      "prefix": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,19}",
                                                   fullmatch=True))},
        "groups": {name: draw(SELECTOR) for name in names},
        "rules": rules,
    }
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_generated_valid_policies_round_trip_without_errors(document: dict[str, Any]) -> None:
    loaded: PolicyLoad = load_policy(yaml.safe_dump(document, sort_keys=False))
    assert loaded.errors == ()
    policy = loaded.policy
    assert policy is not None
    assert [g.name for g in policy.groups] == list(document["groups"])
    assert sorted(r["priority"] for r in document["rules"]) == [r.priority for r in policy.rules]
    assert (policy.ownership.band_low, policy.ownership.band_high) == tuple(
        document["ownership"]["band"])
    assert all(g.line is not None for g in policy.groups)
    assert all(r.line is not None for r in policy.rules)


@pytest.mark.parametrize("ports", [
    "any", "ANY", " Any ", [80], ["80"], ["8000-8100"], [" 8000 - 8100 "], ["any"], ["ANY"],
    [443, "8000-8100"], [70000], ["90-80"], ["abc"], [], ["any", 80], [True], "80",
])
def test_the_schema_and_the_loader_agree_on_ports(ports: Any) -> None:
    """What the loader reads, the schema an editor checks with accepts; what the schema refuses,
    the loader refuses (the loader alone checks numbers: 70000, a reversed range)."""
    schema = policy_json_schema()
    document = yaml.safe_load(SAMPLE.read_text())
    document["rules"][0]["ports"] = ports
    loaded = load_policy(yaml.safe_dump(document))
    schema_ok = _check(schema, document, schema) == []
    if loaded.policy is not None:
        assert schema_ok, ports
    if not schema_ok:
        assert loaded.policy is None, ports
