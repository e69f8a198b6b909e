"""Group selectors resolved against the sample estate."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, collapse_addresses, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.assets import IpAddress
from shared.domain.normalize import normalize
from shared.policy.groups import GroupResolver, cover, cover_text, resolve_policy_groups
from shared.policy.model import (
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    EnforcementPoint,
    Group,
    NotOf,
    Policy,
    Posture,
    ResourceGroupSelector,
    Selector,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)
from shared.sample.estate import classic_estate

INVENTORY = normalize(classic_estate())


def ips(selector: Selector) -> list[str]:
    return list(GroupResolver(INVENTORY).resolve(Group("g", selector)).ips)


def test_asg_by_name_and_by_id_case_insensitive() -> None:
    web = next(a for a in INVENTORY.asgs.values() if a.name == "Web")
    assert ips(AsgSelector("Web")) == ["10.10.1.4", "10.10.1.5", "10.10.1.6", "10.10.1.7"]
    assert ips(AsgSelector(web.id.upper())) == ips(AsgSelector("web"))


def test_vnet_subnet_subscription_resource_group() -> None:
    assert ips(SubnetSelector("payroll-vnet/app")) == ["10.10.2.4", "10.10.2.5"]
    assert len(ips(VnetSelector("hdi-vnet"))) == 17
    assert ips(SubscriptionSelector("ERP-Prod")) == ips(VnetSelector("erp-vnet"))
    sub = next(s for s in INVENTORY.subscriptions.values() if s.display_name == "ERP-Prod")
    assert ips(SubscriptionSelector(sub.subscription_id)) == ips(SubscriptionSelector("erp-prod"))
    some_nic = next(n for n in INVENTORY.nics.values() if n.name == "payroll-web-01-nic")
    assert "10.10.1.4" in ips(ResourceGroupSelector(some_nic.resource_group))


def test_tags_use_vm_tags_and_star_means_present() -> None:
    assert ips(TagsSelector((("role", "dns"),))) == ["10.0.1.4", "10.0.1.5"]
    assert len(ips(TagsSelector((("cluster", "*"),)))) == 17
    assert ips(TagsSelector((("ROLE", "dns"),))) == ["10.0.1.4", "10.0.1.5"]  # names: any case
    assert ips(TagsSelector((("role", "DNS"),))) == []  # values: exact


def test_all_any_not_and_cidr() -> None:
    prod_web = ips(AllOf((AsgSelector("Web"), TagsSelector((("env", "prod"),)))))
    assert prod_web == ["10.10.1.4", "10.10.1.5"]
    assert ips(AnyOf((AsgSelector("Logic"), TagsSelector((("role", "dns"),))))) == [
        "10.0.1.4", "10.0.1.5", "10.10.2.4", "10.10.2.5"]
    everything = len(ips(NotOf(AnyOf(()))))
    assert len(ips(NotOf(VnetSelector("hdi-vnet")))) == everything - 17
    group = GroupResolver(INVENTORY).resolve(
        Group("ext", CidrSelector((ip_network("203.0.113.0/24"),))))
    assert group.members == () and [str(p) for p in group.prefixes()] == ["203.0.113.0/24"]


def test_prefixes_are_the_exact_cover() -> None:
    group = GroupResolver(INVENTORY).resolve(Group("web", AsgSelector("Web")))
    assert [str(p) for p in group.prefixes()] == ["10.10.1.4/30"]
    logic = GroupResolver(INVENTORY).resolve(Group("dns", TagsSelector((("role", "dns"),))))
    assert [str(p) for p in logic.prefixes()] == ["10.0.1.4/31"]


@pytest.mark.parametrize(("selector", "message"), [
    (AsgSelector("Nope"), "asg 'Nope' matches nothing"),
    (SubnetSelector("payroll-vnet/nope"), "subnet 'payroll-vnet/nope' matches nothing"),
    (SubscriptionSelector("Marketing"), "subscription 'Marketing' matches nothing"),
])
def test_unresolvable_references_are_errors(selector: Selector, message: str) -> None:
    policy = Policy(Posture(), EnforcementPoint.SUBNET, (Group("g", selector, line=7),), ())
    resolved, errors, _ = resolve_policy_groups(policy, INVENTORY)
    assert resolved == {}
    assert [str(e) for e in errors] == [f"line 7: group 'g': {message} in the inventory"]


def test_ambiguous_names_list_the_candidates() -> None:
    def vnet(sub: str) -> dict[str, object]:
        return {"id": f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/"
                      "virtualNetworks/app-vnet", "type": "microsoft.network/virtualnetworks",
                "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}

    twins = normalize([vnet("11111111-0000-0000-0000-000000000001"),
                       vnet("11111111-0000-0000-0000-000000000002")])
    with pytest.raises(ValueError, match="vnet 'app-vnet' is ambiguous; use one of: ") as caught:
        GroupResolver(twins).resolve(Group("g", VnetSelector("app-vnet")))
    assert str(caught.value).count("/subscriptions/11111111-0000-0000-0000-00000000000") == 2
    one = GroupResolver(twins).resolve(Group("g", VnetSelector(
        "/SUBSCRIPTIONS/11111111-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
        "Microsoft.Network/virtualNetworks/app-vnet")))
    assert one.members == ()


def test_empty_group_is_a_warning() -> None:
    policy = Policy(Posture(), EnforcementPoint.SUBNET,
                    (Group("none", AllOf((AsgSelector("Web"), AsgSelector("SAP")))),), ())
    _, errors, warnings = resolve_policy_groups(policy, INVENTORY)
    assert errors == [] and [w.message for w in warnings] == ["matches nothing"]


@given(st.lists(st.one_of(
    st.integers(0, 2**32 - 1).map(IPv4Address),
    st.integers(0x0A000000, 0x0A000400).map(IPv4Address),  # dense runs
    st.integers(0, 2**128 - 1).map(IPv6Address),
), max_size=60))
def test_cover_is_the_exact_minimal_cidr_cover(addresses: list[IpAddress]) -> None:
    expected = [*collapse_addresses(ip_network(a) for a in addresses if a.version == 4),
                *collapse_addresses(ip_network(a) for a in addresses if a.version == 6)]
    assert list(cover(addresses)) == expected
    assert list(cover_text(addresses)) == [str(n) for n in expected]
