"""The NSG evaluator against Azure's documented semantics, on real normalized estates.

The estate below is raw ARM JSON fed through :func:`normalize`, so the evaluator sees exactly
what it sees in production. Hand-checked cases follow the examples of
``network-security-group-how-it-works.md`` and ``network-security-groups-overview.md``; the
property tests compare the evaluator with a reference written here in the most literal way
(sort the rules, loop, first match wins, ``ipaddress`` membership), sharing no code with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.assets import Access, Direction, IpAddress, IpNetwork, SecurityRule
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.evaluator import Hop, NsgEvaluator, NsgRuleError, Packet, Verdict

SUB = "0b0c0d0e-1111-4222-8333-444455556666"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network"


def vnet_id(name: str) -> str:
    return f"{NET}/virtualNetworks/{name}"


def subnet_id(vnet: str, name: str) -> str:
    return f"{vnet_id(vnet)}/subnets/{name}"


def nsg_id(name: str) -> str:
    return f"{NET}/networkSecurityGroups/{name}"


def asg_id(name: str) -> str:
    return f"{NET}/applicationSecurityGroups/{name}"


def nic_id(name: str) -> str:
    return f"{NET}/networkInterfaces/{name}"


# -- the estate, as raw ARM rows ------------------------------------------------------------------
#
#  hub-vnet    10.0.0.0/16 fd00:0::/48   hub-a  10.0.1.0/24 (nsg-hub-subnet, own default rules)
#      |  Connected                         hub1 10.0.1.4 (nsg-hub-nic: DenyRdpInbound)
#  spoke-vnet  10.1.0.0/16 fd00:1::/48   web    10.1.1.0/24 fd00:1:0:1::/64 (nsg-web-subnet)
#                                           web1 10.1.1.4 [asg-web] (nsg-web-nic)
#                                           web2 10.1.1.5 fd00:1:0:1::5 [asg-web]
#                                           web3 10.1.1.6
#                                           web4 10.1.1.7 (nsg-web-nic)
#                                        app    10.1.2.0/24 (no NSG)
#                                           app1 10.1.2.4 [asg-app] (nsg-app-nic)
#                                           app2 10.1.2.5 [asg-app]
#  island-vnet 10.2.0.0/16  peering with spoke only "Disconnected"; island1 10.2.1.4,
#                           orphan1 10.2.1.5 whose NIC names an NSG missing from the snapshot
#  far-vnet    10.3.0.0/16  peered (Connected) with hub only: peering is not transitive
#  twin-vnet   10.1.0.0/16  overlaps spoke, not peered; twin1 10.1.1.4 (nsg-twin on its subnet)
#  public-vnet 52.10.0.0/16 a VNet using public address space: not Internet, not peered


def _default_rules_raw(nsg: str) -> list[dict[str, Any]]:
    """Default rules as ARM lists them (the doc's "AllowVNetInBound" spelling, so a test can
    tell the snapshot's defaults from the evaluator's built-in ones)."""
    specs = [
        ("AllowVNetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
        ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
        ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
        ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
        ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
        ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
    ]
    return [
        {"id": f"{nsg_id(nsg)}/defaultSecurityRules/{name}", "name": name, "properties": {
            "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
            "sourceAddressPrefix": src, "destinationAddressPrefix": dst, "access": access,
            "priority": priority, "direction": direction}}
        for name, direction, access, priority, src, dst in specs
    ]


def _nsg(name: str, rules: Sequence[dict[str, Any]] = (), *,
         defaults: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"securityRules": list(rules)}
    if defaults:
        props["defaultSecurityRules"] = _default_rules_raw(name)
    return {"id": nsg_id(name), "name": name, "type": "Microsoft.Network/networkSecurityGroups",
            "location": "westeurope", "properties": props}


def _subnet(vnet: str, name: str, prefixes: Sequence[str], nsg: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {"addressPrefixes": list(prefixes)}
    if nsg:
        props["networkSecurityGroup"] = {"id": nsg_id(nsg)}
    return {"id": subnet_id(vnet, name), "name": name, "properties": props}


def _vnet(name: str, prefixes: Sequence[str], subnets: Sequence[dict[str, Any]],
          peers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return {
        "id": vnet_id(name), "name": name, "type": "Microsoft.Network/virtualNetworks",
        "location": "westeurope",
        "properties": {
            "addressSpace": {"addressPrefixes": list(prefixes)},
            "subnets": list(subnets),
            "virtualNetworkPeerings": [
                {"name": f"{name}-to-{remote}", "properties": {
                    "remoteVirtualNetwork": {"id": vnet_id(remote)}, "peeringState": state}}
                for remote, state in peers
            ],
        },
    }


def _nic(name: str, subnet: str, ips: Sequence[str], *, asgs: Sequence[str] = (),
         nsg: str | None = None) -> dict[str, Any]:
    configs = [
        {"id": f"{nic_id(name)}/ipConfigurations/ipconfig{i + 1}", "name": f"ipconfig{i + 1}",
         "properties": {"privateIPAddress": ip, "subnet": {"id": subnet}, "primary": i == 0,
                        "applicationSecurityGroups": [{"id": asg_id(a)} for a in asgs]}}
        for i, ip in enumerate(ips)
    ]
    props: dict[str, Any] = {"ipConfigurations": configs}
    if nsg:
        props["networkSecurityGroup"] = {"id": nsg_id(nsg)}
    return {"id": nic_id(name), "name": name, "type": "Microsoft.Network/networkInterfaces",
            "location": "westeurope", "properties": props}


def _asg(name: str) -> dict[str, Any]:
    return {"id": asg_id(name), "name": name,
            "type": "Microsoft.Network/applicationSecurityGroups", "location": "westeurope"}


DENY_RDP_RAW = {"name": "DenyRdpInbound", "properties": {
    "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "3389",
    "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "access": "Deny",
    "priority": 100, "direction": "Inbound"}}


def estate_rows() -> list[dict[str, Any]]:
    web = subnet_id("spoke-vnet", "web")
    app = subnet_id("spoke-vnet", "app")
    island = subnet_id("island-vnet", "island")
    return [
        _vnet("hub-vnet", ["10.0.0.0/16", "fd00:0::/48"],
              [_subnet("hub-vnet", "hub-a", ["10.0.1.0/24", "fd00:0:0:1::/64"],
                       "nsg-hub-subnet")],
              [("spoke-vnet", "Connected"), ("far-vnet", "Connected")]),
        _vnet("spoke-vnet", ["10.1.0.0/16", "fd00:1::/48"],
              [_subnet("spoke-vnet", "web", ["10.1.1.0/24", "fd00:1:0:1::/64"],
                       "nsg-web-subnet"),
               _subnet("spoke-vnet", "app", ["10.1.2.0/24"], None)],
              [("hub-vnet", "Connected"), ("island-vnet", "Disconnected")]),
        _vnet("island-vnet", ["10.2.0.0/16"],
              [_subnet("island-vnet", "island", ["10.2.1.0/24"], None)],
              [("spoke-vnet", "Disconnected")]),
        _vnet("far-vnet", ["10.3.0.0/16"], [_subnet("far-vnet", "far", ["10.3.1.0/24"], None)],
              [("hub-vnet", "Connected")]),
        _vnet("public-vnet", ["52.10.0.0/16"],
              [_subnet("public-vnet", "public", ["52.10.1.0/24"], None)]),
        _vnet("twin-vnet", ["10.1.0.0/16"],
              [_subnet("twin-vnet", "twin-web", ["10.1.1.0/24"], "nsg-twin")]),
        _nsg("nsg-hub-subnet", defaults=True),
        _nsg("nsg-hub-nic", [DENY_RDP_RAW], defaults=True),
        _nsg("nsg-web-subnet"),
        _nsg("nsg-web-nic"),
        _nsg("nsg-app-nic"),
        _nsg("nsg-twin"),
        _asg("asg-web"), _asg("asg-app"), _asg("asg-ghost"),
        _nic("hub1", subnet_id("hub-vnet", "hub-a"), ["10.0.1.4"], nsg="nsg-hub-nic"),
        _nic("web1", web, ["10.1.1.4"], asgs=["asg-web"], nsg="nsg-web-nic"),
        _nic("web2", web, ["10.1.1.5", "fd00:1:0:1::5"], asgs=["asg-web"]),
        _nic("web3", web, ["10.1.1.6"]),
        _nic("web4", web, ["10.1.1.7"], nsg="nsg-web-nic"),
        _nic("app1", app, ["10.1.2.4"], asgs=["asg-app"], nsg="nsg-app-nic"),
        _nic("app2", app, ["10.1.2.5"], asgs=["asg-app"]),
        _nic("island1", island, ["10.2.1.4"]),
        _nic("orphan1", island, ["10.2.1.5"], nsg="nsg-deleted"),
        _nic("twin1", subnet_id("twin-vnet", "twin-web"), ["10.1.1.4"]),
    ]


INVENTORY = normalize(estate_rows())
TAG_RANGES: dict[str, list[IpNetwork]] = {
    "Storage": [ip_network("20.1.0.0/16")],
    "AzureCloud": [ip_network("20.0.0.0/8"), ip_network("2603:1000::/24")],
}
WEB_SUBNET_NSG = nsg_id("nsg-web-subnet")
WEB_NIC_NSG = nsg_id("nsg-web-nic")


def rule(name: str, priority: int, direction: str = "Inbound", access: str = "Allow", *,
         protocol: str = "*", src: Sequence[str] = ("*",), dst: Sequence[str] = ("*",),
         ports: Sequence[str] = ("*",), src_ports: Sequence[str] = ("*",),
         src_asgs: Sequence[str] = (), dst_asgs: Sequence[str] = ()) -> SecurityRule:
    return SecurityRule(
        name=name, priority=priority, direction=Direction(direction), access=Access(access),
        protocol=protocol,
        source_prefixes=() if src_asgs else tuple(src),
        destination_prefixes=() if dst_asgs else tuple(dst),
        source_asg_ids=tuple(asg_id(a) for a in src_asgs),
        destination_asg_ids=tuple(asg_id(a) for a in dst_asgs),
        source_ports=tuple(src_ports), destination_ports=tuple(ports),
    )


def evaluator(**override: Sequence[SecurityRule]) -> NsgEvaluator:
    """An evaluator whose NSGs named in ``override`` (by name) get these custom rules."""
    return NsgEvaluator(INVENTORY, {nsg_id(name.replace("_", "-")): rules
                                    for name, rules in override.items()},
                        service_tag_ranges=TAG_RANGES)


def decide(ev: NsgEvaluator, src: str, dst: str, port: int = 443, protocol: str = "Tcp",
           src_port: int = 49152) -> Verdict:
    return ev.decide(Packet.of(src, dst, port, protocol, src_port))


def test_estate_loads_cleanly() -> None:
    assert INVENTORY.report.skipped == ()
    assert INVENTORY.counts()["nics"] == 10
    assert len(INVENTORY.locate_ip("10.1.1.4")) == 2  # web1 and twin1 overlap


# -- default rules ------------------------------------------------------------------------------


def test_default_rules_allow_vnet_to_vnet() -> None:
    verdict = decide(evaluator(), "10.1.2.5", "10.1.1.6", 22)

    assert verdict == Verdict(True, (), (Hop(WEB_SUBNET_NSG, "AllowVnetInBound", Access.ALLOW,
                                             "subnet"),))


def test_default_rules_deny_internet_inbound() -> None:
    verdict = decide(evaluator(), "8.8.8.8", "10.1.1.6", 443)

    assert not verdict.allowed
    assert verdict.denied_by == Hop(WEB_SUBNET_NSG, "DenyAllInBound", Access.DENY, "subnet")


def test_default_rules_allow_outbound_internet_but_not_private_space_outside_the_vnet() -> None:
    ev = evaluator()
    assert decide(ev, "10.1.1.6", "8.8.8.8").outbound == (
        Hop(WEB_SUBNET_NSG, "AllowInternetOutBound", Access.ALLOW, "subnet"),)
    # 192.168.1.1 is neither VirtualNetwork nor Internet: only DenyAllOutBound matches.
    assert decide(ev, "10.1.1.6", "192.168.1.1").denied_by == Hop(
        WEB_SUBNET_NSG, "DenyAllOutBound", Access.DENY, "subnet")
    # Nor is the address space of a VNet of the estate, even one we are not peered with.
    assert not decide(ev, "10.1.1.6", "10.2.1.4").allowed


def test_load_balancer_probe_allowed_by_default() -> None:
    # The host VIP is part of VirtualNetwork ("the virtual IP address of the host",
    # service-tags-overview.md), so AllowVnetInBound, at 65000, is the rule that admits it.
    verdict = decide(evaluator(), "168.63.129.16", "10.1.1.6", 80)

    assert verdict.allowed
    assert verdict.inbound[0].rule == "AllowVnetInBound"


def test_azure_load_balancer_tag_is_the_host_vip() -> None:
    ev = evaluator(nsg_web_subnet=[rule("AllowProbes", 100, src=["AzureLoadBalancer"]),
                                   rule("DenyAll", 4096, access="Deny")])

    assert decide(ev, "168.63.129.16", "10.1.1.6", 80).inbound[0].rule == "AllowProbes"
    assert decide(ev, "10.1.2.5", "10.1.1.6", 80).inbound[0].rule == "DenyAll"


def test_snapshot_default_rules_are_used_when_listed() -> None:
    # nsg-hub-subnet lists its defaults (doc spelling "AllowVNetInBound"); nsg-web-subnet does
    # not, so the documented six apply.
    ev = evaluator()
    assert decide(ev, "10.0.1.200", "10.0.1.4", 22).inbound[0] == Hop(
        nsg_id("nsg-hub-subnet"), "AllowVNetInBound", Access.ALLOW, "subnet")
    assert decide(ev, "10.0.1.200", "10.1.1.6", 22).inbound[0].rule == "AllowVnetInBound"


# -- priority and path order --------------------------------------------------------------------


def test_lower_priority_number_wins() -> None:
    allow_first = evaluator(nsg_web_subnet=[rule("Allow443", 200, ports=["443"]),
                                            rule("DenyAll", 300, access="Deny")])
    deny_first = evaluator(nsg_web_subnet=[rule("Allow443", 300, ports=["443"]),
                                           rule("DenyAll", 200, access="Deny")])

    assert decide(allow_first, "8.8.8.8", "10.1.1.6").inbound[0].rule == "Allow443"
    assert decide(allow_first, "8.8.8.8", "10.1.1.6").allowed
    assert decide(deny_first, "8.8.8.8", "10.1.1.6").inbound[0].rule == "DenyAll"
    assert not decide(deny_first, "8.8.8.8", "10.1.1.6").allowed


def test_rule_order_in_the_list_does_not_matter() -> None:
    forward = evaluator(nsg_web_subnet=[rule("A", 200, ports=["443"]),
                                        rule("D", 300, access="Deny")])
    backward = evaluator(nsg_web_subnet=[rule("D", 300, access="Deny"),
                                         rule("A", 200, ports=["443"])])

    assert decide(forward, "8.8.8.8", "10.1.1.6") == decide(backward, "8.8.8.8", "10.1.1.6")


def test_inbound_processes_subnet_nsg_then_nic_nsg() -> None:
    # web4 sits in the web subnet (nsg-web-subnet) and has nsg-web-nic on its NIC.
    open_subnet = [rule("AllowHttps", 100, ports=["443"])]
    deny_nic = [rule("DenyHttps", 100, access="Deny", ports=["443"])]

    verdict = decide(evaluator(nsg_web_subnet=open_subnet, nsg_web_nic=deny_nic),
                     "8.8.8.8", "10.1.1.7")
    assert not verdict.allowed
    assert verdict.inbound == (Hop(WEB_SUBNET_NSG, "AllowHttps", Access.ALLOW, "subnet"),
                               Hop(WEB_NIC_NSG, "DenyHttps", Access.DENY, "nic"))

    # Denied by the subnet NSG: "never evaluated by NSG2" (how-it-works, VM1).
    verdict = decide(evaluator(nsg_web_nic=[rule("AllowHttps", 100, ports=["443"])]),
                     "8.8.8.8", "10.1.1.7")
    assert verdict.inbound == (Hop(WEB_SUBNET_NSG, "DenyAllInBound", Access.DENY, "subnet"),)

    both = decide(evaluator(nsg_web_subnet=open_subnet, nsg_web_nic=open_subnet),
                  "8.8.8.8", "10.1.1.7")
    assert both.allowed and [h.level for h in both.inbound] == ["subnet", "nic"]


def test_outbound_processes_nic_nsg_then_subnet_nsg() -> None:
    deny = [rule("DenyWeb", 100, "Outbound", "Deny", ports=["80"])]

    at_nic = decide(evaluator(nsg_web_nic=deny), "10.1.1.7", "8.8.8.8", 80)
    assert at_nic.outbound == (Hop(WEB_NIC_NSG, "DenyWeb", Access.DENY, "nic"),)
    assert at_nic.inbound == () and not at_nic.allowed

    at_subnet = decide(evaluator(nsg_web_subnet=deny), "10.1.1.7", "8.8.8.8", 80)
    assert at_subnet.outbound == (
        Hop(WEB_NIC_NSG, "AllowInternetOutBound", Access.ALLOW, "nic"),
        Hop(WEB_SUBNET_NSG, "DenyWeb", Access.DENY, "subnet"),
    )
    assert not at_subnet.allowed


def test_outbound_deny_at_source_stops_before_destination() -> None:
    ev = evaluator(nsg_app_nic=[rule("DenyToWeb", 100, "Outbound", "Deny", dst=["10.1.1.0/24"])])

    verdict = decide(ev, "10.1.2.4", "10.1.1.6")
    assert verdict.outbound == (Hop(nsg_id("nsg-app-nic"), "DenyToWeb", Access.DENY, "nic"),)
    assert verdict.inbound == ()


def test_intra_subnet_traffic_is_filtered_both_ways() -> None:
    ev = evaluator(nsg_web_subnet=[rule("DenyFromWeb", 100, access="Deny", src=["10.1.1.0/24"])])

    verdict = decide(ev, "10.1.1.5", "10.1.1.6")
    assert verdict.outbound == (Hop(WEB_SUBNET_NSG, "AllowVnetOutBound", Access.ALLOW,
                                    "subnet"),)
    assert verdict.inbound == (Hop(WEB_SUBNET_NSG, "DenyFromWeb", Access.DENY, "subnet"),)


def test_no_nsg_on_either_side_allows() -> None:
    ev = evaluator()
    assert decide(ev, "10.2.1.4", "10.1.2.5", 3389) == Verdict(True, (), ())
    assert decide(ev, "8.8.8.8", "1.1.1.1", 25) == Verdict(True, (), ())


# -- matching -----------------------------------------------------------------------------------


def test_asg_source_matches_members_only() -> None:
    ev = evaluator(nsg_web_subnet=[rule("AppToWeb", 100, src_asgs=["asg-app"], ports=["8443"]),
                                   rule("DenyAll", 4000, access="Deny")])

    assert decide(ev, "10.1.2.5", "10.1.1.6", 8443).allowed  # app2 is in asg-app
    assert not decide(ev, "10.2.1.4", "10.1.1.6", 8443).allowed  # island1 is not
    assert not decide(ev, "10.1.2.5", "10.1.1.6", 443).allowed  # right ASG, wrong port


def test_asg_destination_on_a_subnet_nsg_applies_to_member_nics_only() -> None:
    # "An ASG rule only applies to NICs that are members of the ASG (even if NSG is on the
    # subnet)": web2 is in asg-web, web3 is not.
    ev = evaluator(nsg_web_subnet=[rule("ToWeb", 100, dst_asgs=["asg-web"], ports=["443"])])

    assert decide(ev, "8.8.8.8", "10.1.1.5").allowed
    assert not decide(ev, "8.8.8.8", "10.1.1.6").allowed
    empty = evaluator(nsg_web_subnet=[rule("ToGhost", 100, dst_asgs=["asg-ghost"])])
    assert not decide(empty, "8.8.8.8", "10.1.1.5").allowed


def test_port_ranges_lists_and_source_ports() -> None:
    ev = evaluator(nsg_web_subnet=[
        rule("Web", 100, protocol="Tcp", ports=["80", "8000-8100"]),
        rule("PortalList", 110, protocol="Tcp", ports=["22,443"]),
        rule("FromNtp", 120, protocol="Udp", ports=["*"], src_ports=["123"]),
    ])

    def admitted(port: int, protocol: str = "Tcp", src_port: int = 49152) -> bool:
        return decide(ev, "8.8.8.8", "10.1.1.6", port, protocol, src_port).allowed

    assert [admitted(p) for p in (80, 8000, 8050, 8100, 22, 443)] == [True] * 6
    assert [admitted(p) for p in (81, 7999, 8101, 23, 0, 65535)] == [False] * 6
    assert admitted(5000, "Udp", src_port=123)
    assert not admitted(5000, "Udp", src_port=124)


def test_protocol_any_versus_specific() -> None:
    ev = evaluator(nsg_web_subnet=[rule("TcpOnly", 100, protocol="Tcp", ports=["53"]),
                                   rule("AnyIcmp", 110, protocol="*", ports=["*"],
                                        src=["9.9.9.9"]),
                                   rule("Ipsec", 120, protocol="Esp")])

    assert decide(ev, "8.8.8.8", "10.1.1.6", 53, "Tcp").inbound[0].rule == "TcpOnly"
    assert decide(ev, "8.8.8.8", "10.1.1.6", 53, "Udp").inbound[0].rule == "DenyAllInBound"
    assert decide(ev, "9.9.9.9", "10.1.1.6", 8, "Icmp").inbound[0].rule == "AnyIcmp"
    assert decide(ev, "9.9.9.9", "10.1.1.6", 53, "udp").inbound[0].rule == "AnyIcmp"
    # ESP never matches a TCP, UDP or ICMP packet.
    assert decide(ev, "8.8.8.8", "10.1.1.6", 500, "Udp").inbound[0].rule == "DenyAllInBound"


def test_icmp_compares_the_rule_port_with_the_icmp_type() -> None:
    ev = evaluator(nsg_web_subnet=[rule("EchoOnly", 100, protocol="Icmp", ports=["8"]),
                                   rule("AnyOn443", 110, ports=["443"])])

    assert decide(ev, "8.8.8.8", "10.1.1.6", 8, "Icmp").allowed
    assert not decide(ev, "8.8.8.8", "10.1.1.6", 13, "Icmp").allowed
    assert decide(ev, "8.8.8.8", "10.1.1.6", 443, "Tcp").allowed


def test_ipv6_prefixes_and_families_do_not_mix() -> None:
    ev = evaluator(nsg_web_subnet=[rule("DocNet", 100, src=["2001:db8::/32"]),
                                   rule("AllV4", 110, src=["0.0.0.0/0"], ports=["22"])])

    assert decide(ev, "2001:db8::1", "fd00:1:0:1::5").inbound[0].rule == "DocNet"
    assert not decide(ev, "2001:db9::1", "fd00:1:0:1::5").allowed
    # 0.0.0.0/0 is every IPv4 address, and no IPv6 one.
    assert decide(ev, "8.8.8.8", "10.1.1.5", 22).inbound[0].rule == "AllV4"
    assert not decide(ev, "2001:db9::1", "fd00:1:0:1::5", 22).allowed
    # The peered hub's IPv6 space is VirtualNetwork too.
    assert decide(ev, "fd00:0:0:1::99", "fd00:1:0:1::5").inbound[0].rule == "AllowVnetInBound"


def test_peered_vnet_is_virtual_network_unpeered_and_transitive_are_not() -> None:
    ev = evaluator()
    # hub <-> spoke Connected: an address of the hub is VirtualNetwork for spoke NICs.
    assert decide(ev, "10.0.1.200", "10.1.1.6").inbound[0].rule == "AllowVnetInBound"
    # island <-> spoke Disconnected: not VirtualNetwork.
    assert decide(ev, "10.2.1.4", "10.1.1.6").inbound[0].rule == "DenyAllInBound"
    # far <-> hub <-> spoke: peering is not transitive.
    assert decide(ev, "10.3.1.4", "10.1.1.6").inbound[0].rule == "DenyAllInBound"
    # ... but far is VirtualNetwork for the hub.
    assert decide(ev, "10.3.1.4", "10.0.1.4", 22).allowed


def test_internet_tag_excludes_private_estate_and_host_vip() -> None:
    ev = evaluator(nsg_web_subnet=[rule("FromInternet", 100, src=["Internet"])])

    def rule_for(src: str) -> str | None:
        return decide(ev, src, "10.1.1.6").inbound[0].rule

    assert rule_for("8.8.8.8") == "FromInternet"
    assert rule_for("20.1.2.3") == "FromInternet"  # Azure public space is Internet too
    for private in ("192.168.1.1", "172.16.0.1", "100.64.0.1", "10.9.9.9", "169.254.0.1",
                    "127.0.0.1", "10.2.1.4", "52.10.1.1"):
        assert rule_for(private) == "DenyAllInBound", private
    assert rule_for("168.63.129.16") == "AllowVnetInBound"


def test_service_tags_from_ranges_and_unknown_tags_recorded() -> None:
    ev = evaluator(nsg_web_subnet=[rule("Blob", 100, "Outbound", "Deny", dst=["Storage"]),
                                   rule("Sql", 110, "Outbound", "Deny", dst=["Sql.WestEurope"]),
                                   rule("Cloud", 120, "Outbound", "Deny", dst=["azurecloud"])])

    assert decide(ev, "10.1.1.6", "20.1.2.3").denied_by == Hop(WEB_SUBNET_NSG, "Blob",
                                                              Access.DENY, "subnet")
    assert decide(ev, "10.1.1.6", "20.9.9.9").denied_by.rule == "Cloud"  # type: ignore[union-attr]
    # Sql.WestEurope is not in the ranges: it matches nothing (never "any") and is recorded.
    assert decide(ev, "10.1.1.6", "40.1.1.1").allowed
    assert ev.unknown_service_tags == {"Sql.WestEurope"}


def test_service_tag_ranges_cannot_redefine_builtin_tags() -> None:
    with pytest.raises(ValueError, match="built-in tag"):
        NsgEvaluator(INVENTORY, service_tag_ranges={"Internet": [ip_network("0.0.0.0/0")]})


# -- overrides, resolution and robustness -------------------------------------------------------


def test_inventory_rules_apply_and_override_replaces_them() -> None:
    # nsg-hub-nic has DenyRdpInbound in the snapshot.
    assert decide(evaluator(), "10.0.1.200", "10.0.1.4", 3389).denied_by == Hop(
        nsg_id("nsg-hub-nic"), "DenyRdpInbound", Access.DENY, "nic")

    replaced = NsgEvaluator(INVENTORY, {nsg_id("nsg-hub-nic").upper(): ()})
    verdict = decide(replaced, "10.0.1.200", "10.0.1.4", 3389)
    assert verdict.allowed
    assert verdict.inbound[-1] == Hop(nsg_id("nsg-hub-nic"), "AllowVNetInBound", Access.ALLOW,
                                      "nic")  # the NSG's own default rules stay


def test_overlapping_ip_prefers_the_other_endpoints_vnet() -> None:
    # 10.1.1.4 is web1 (spoke, nsg-web-subnet + nsg-web-nic) and twin1 (twin, nsg-twin).
    ev = evaluator(nsg_twin=[rule("DenyAll", 100, access="Deny")])

    same_vnet = decide(ev, "10.1.2.5", "10.1.1.4", 22)
    assert same_vnet.allowed
    assert {h.nsg_id for h in same_vnet.inbound} == {WEB_SUBNET_NSG, WEB_NIC_NSG}

    peered = decide(ev, "10.0.1.4", "10.1.1.4", 22)  # hub is peered with spoke, not twin
    assert peered.allowed and nsg_id("nsg-twin") not in {h.nsg_id for h in peered.inbound}


def test_overlapping_ip_without_a_hint_must_be_allowed_for_every_candidate() -> None:
    twin_open = [rule("Https", 100, ports=["443"])]
    only_twin = decide(evaluator(nsg_twin=twin_open), "8.8.8.8", "10.1.1.4")
    assert not only_twin.allowed
    assert {h.nsg_id for h in only_twin.inbound} == {WEB_SUBNET_NSG, nsg_id("nsg-twin")}

    everywhere = decide(evaluator(nsg_twin=twin_open, nsg_web_subnet=twin_open,
                                  nsg_web_nic=twin_open), "8.8.8.8", "10.1.1.4")
    assert everywhere.allowed


def test_missing_nsg_is_recorded_and_evaluated_with_default_rules() -> None:
    ev = evaluator()

    assert not decide(ev, "8.8.8.8", "10.2.1.5").allowed
    assert decide(ev, "10.2.1.4", "10.2.1.5").allowed
    assert ev.missing_nsgs == {nsg_id("nsg-deleted")}


def test_prepare_compiles_everything_up_front() -> None:
    ev = evaluator(nsg_app_nic=[rule("ToSql", 100, "Outbound", dst=["Sql"])])
    assert ev.unknown_service_tags == frozenset()
    ev.prepare()
    assert ev.unknown_service_tags == {"Sql"}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([rule("A", 100), rule("B", 100)], "also used by 'A'"),
        ([rule("A", 99)], "outside 100-4096"),
        ([rule("A", 100, ports=["70000"])], "bad destination port"),
        ([rule("A", 100, ports=["90-80"])], "bad destination port"),
        ([rule("A", 100, src=["10.0.0.0/33"])], "bad source address"),
        ([rule("A", 100, protocol="Gre")], "unknown protocol"),
        ([rule("A", 100, src=[])], "no source address"),
    ],
)
def test_rules_arm_would_reject_raise(rules: list[SecurityRule], message: str) -> None:
    with pytest.raises(NsgRuleError, match=message):
        decide(evaluator(nsg_web_subnet=rules), "8.8.8.8", "10.1.1.6")


def test_same_priority_in_different_directions_is_fine() -> None:
    ev = evaluator(nsg_web_subnet=[rule("In", 100), rule("Out", 100, "Outbound")])
    assert decide(ev, "8.8.8.8", "10.1.1.6").allowed


def test_packet_validation() -> None:
    with pytest.raises(ValueError, match="protocol"):
        Packet.of("10.0.0.1", "10.0.0.2", 80, "Esp")
    with pytest.raises(ValueError, match="dst_port"):
        Packet.of("10.0.0.1", "10.0.0.2", 65536)
    with pytest.raises(ValueError, match="families"):
        Packet.of("10.0.0.1", "fd00::1", 80)
    assert Packet.of("10.0.0.1", "10.0.0.2", 80, "tcp").protocol == "Tcp"


# -- the classic sample estate ------------------------------------------------------------------


def test_classic_sample_estate() -> None:
    estate = pytest.importorskip("shared.sample.estate")
    inventory = normalize(estate.classic_estate())
    ev = NsgEvaluator(inventory)
    ev.prepare()

    def verdict(src: str, dst: str, port: int) -> Verdict:
        return ev.decide(Packet.of(src, dst, port))

    assert ev.unknown_service_tags == {"AzureMonitor", "HDInsight"}
    assert verdict("8.8.8.8", "10.10.1.4", 443).inbound[0].rule == "AllowHttpsInbound"  # ASG Web
    assert not verdict("8.8.8.8", "10.10.1.4", 80).allowed
    assert verdict("10.10.1.4", "10.10.2.4", 8443).inbound[0].rule == "AllowWebToLogic"
    assert verdict("10.20.2.4", "8.8.8.8", 443).denied_by.rule == "DenyInternetOutbound"  # type: ignore[union-attr]
    # hdi-vnet is peered with hub and payroll, not with erp: HDInsight cannot reach SAP.
    assert verdict("10.30.0.4", "10.20.1.4", 3200).denied_by.rule == "DenyAllOutBound"  # type: ignore[union-attr]
    assert verdict("10.0.1.20", "10.30.0.4", 22).inbound[0].rule == "AllowSshFromJumpHosts"


# -- property tests against a literal reference -------------------------------------------------

HOST_VIP = ip_address("168.63.129.16")
NOT_INTERNET = [ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "168.63.129.16/32", "fc00::/7", "fe80::/10", "::1/128")]
DOCUMENTED_DEFAULTS = [
    # (name, direction, access, priority, source, destination) - network-security-groups-overview
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
]


def reference_nsg(inventory: Inventory, custom: Sequence[SecurityRule], direction: str,
                  protected_ip: IpAddress, packet: Packet,
                  tag_ranges: dict[str, list[IpNetwork]]) -> tuple[str, str]:
    """One NSG, one direction, the most literal way: (matched rule name, access)."""
    (where,) = inventory.locate_ip(protected_ip)
    assert where.vnet is not None
    virtual_network = [*where.vnet.address_prefixes, ip_network(HOST_VIP)]
    for peering in where.vnet.peerings:
        remote = inventory.vnets.get(peering.remote_vnet_id.lower())
        if peering.state == "Connected" and remote is not None:
            virtual_network.extend(remote.address_prefixes)
    estate_space = [p for v in inventory.vnets.values() for p in v.address_prefixes]

    def in_any(ip: IpAddress, networks: Sequence[IpNetwork]) -> bool:
        return any(ip in network for network in networks)

    def address_matches(prefix: str, ip: IpAddress) -> bool:  # noqa: PLR0911 - one per case
        word = prefix.lower()
        if word in ("*", "any"):
            return True
        if word == "virtualnetwork":
            return in_any(ip, virtual_network)
        if word == "internet":
            return not in_any(ip, NOT_INTERNET) and not in_any(ip, estate_space)
        if word == "azureloadbalancer":
            return ip == HOST_VIP
        for tag, networks in tag_ranges.items():
            if tag.lower() == word:
                return in_any(ip, networks)
        try:
            return ip in ip_network(prefix, strict=False)
        except ValueError:
            return False  # an unknown service tag matches nothing

    def side_matches(prefixes: Sequence[str], asgs: Sequence[str], ip: IpAddress) -> bool:
        if any(address_matches(p, ip) for p in prefixes):
            return True
        return any(ip in [m.ip for m in inventory.asg_members(a)] for a in asgs)

    def port_matches(specs: Sequence[str], port: int) -> bool:
        for spec in specs:
            for part in spec.split(","):
                if part.strip() == "*":
                    return True
                low, _, high = part.partition("-")
                if int(low) <= port <= int(high or low):
                    return True
        return False

    rules = [r for r in custom if r.direction == direction]
    rules += [SecurityRule(name, priority, Direction(d), Access(access), "*", (src,), (dst,))
              for name, d, access, priority, src, dst in DOCUMENTED_DEFAULTS if d == direction]
    for candidate in sorted(rules, key=lambda r: r.priority):
        if candidate.protocol not in ("*", packet.protocol):
            continue
        if not port_matches(candidate.destination_ports, packet.dst_port):
            continue
        if not port_matches(candidate.source_ports, packet.src_port):
            continue
        if not side_matches(candidate.source_prefixes, candidate.source_asg_ids, packet.src_ip):
            continue
        if not side_matches(candidate.destination_prefixes, candidate.destination_asg_ids,
                            packet.dst_ip):
            continue
        return candidate.name, candidate.access.value
    return "", "Deny"


PREFIXES = [
    "*", "Any", "VirtualNetwork", "Internet", "AzureLoadBalancer", "Storage", "storage",
    "AzureCloud", "Sql.WestEurope", "0.0.0.0/0", "::/0", "10.0.0.0/8", "10.1.1.5", "10.1.1.0/25",
    "10.1.1.128/25", "10.1.2.0/24", "10.2.0.0/16", "20.1.2.0/24", "192.168.0.0/16", "8.8.8.8/32",
    "fd00::/8", "fd00:1:0:1::5/128", "2001:db8::/32", "168.63.129.16",
]
ASGS = ["asg-web", "asg-app", "asg-ghost"]
PORTS = ["*", "22", "53", "80", "443", "80-443", "1000-2000", "0-65535", "8-8", "3389,443",
         "49152-65535"]
# Every bound of PORTS and one either side: where an off-by-one in port handling would show.
EDGE_PORTS = sorted({p + d for p in (0, 8, 22, 53, 80, 443, 1000, 2000, 3389, 49152, 65535)
                     for d in (-1, 0, 1) if 0 <= p + d <= 65535})
# Targets are NICs whose only NSG is nsg-web-subnet (web2, web3); peers have no NSG on their
# side (app2, island1, addresses in or outside the estate with no NIC).
TARGETS = ["10.1.1.5", "10.1.1.6", "fd00:1:0:1::5"]
PEERS_V4 = ["10.1.2.5", "10.2.1.4", "10.0.1.200", "10.3.1.4", "8.8.8.8", "20.1.2.3",
            "20.9.9.9", "168.63.129.16", "192.168.1.1", "100.64.0.1", "172.16.5.5", "127.0.0.1",
            "169.254.169.254", "10.9.9.9", "52.10.1.1", "52.11.1.1"]
PEERS_V6 = ["fd00:0:0:1::99", "fd00:9::1", "2001:db8::1", "2603:1000::1", "fe80::1", "::1"]


def _often(common: Sequence[str], rest: Sequence[str]) -> st.SearchStrategy[str]:
    """Half the time one of ``common`` (wide values, so that custom rules match often)."""
    return st.one_of(st.sampled_from(common), st.sampled_from(rest))


@st.composite
def security_rules(draw: st.DrawFn, max_rules: int = 8) -> list[SecurityRule]:
    priorities = draw(st.lists(st.integers(100, 4096), unique=True, min_size=1,
                                 max_size=max_rules))
    prefix = _often(["*", "VirtualNetwork", "Internet"], PREFIXES)
    rules = []
    for index, priority in enumerate(priorities):
        sides: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for _ in range(2):
            if draw(st.integers(0, 4)) == 0:
                sides.append(((), tuple(asg_id(a) for a in draw(
                    st.lists(st.sampled_from(ASGS), min_size=1, max_size=2)))))
            else:
                sides.append((tuple(draw(st.lists(prefix, min_size=1, max_size=3))), ()))
        (src, src_asgs), (dst, dst_asgs) = sides
        rules.append(SecurityRule(
            name=f"r{index}", priority=priority,
            direction=draw(st.sampled_from([Direction.INBOUND, Direction.OUTBOUND])),
            access=draw(st.sampled_from([Access.ALLOW, Access.DENY])),
            protocol=draw(_often(["*"], ["Tcp", "Udp", "Icmp", "Esp", "Ah"])),
            source_prefixes=src, source_asg_ids=src_asgs,
            destination_prefixes=dst, destination_asg_ids=dst_asgs,
            source_ports=tuple(draw(st.lists(_often(["*"], ["123", "49152-65535", "0-1023"]),
                                             min_size=1, max_size=2))),
            destination_ports=tuple(draw(st.lists(_often(["*"], PORTS), min_size=1,
                                                  max_size=3))),
        ))
    return rules


@st.composite
def packets(draw: st.DrawFn) -> tuple[str, Packet]:
    """(direction evaluated at the target, packet): inbound = peer -> target."""
    target = ip_address(draw(st.sampled_from(TARGETS)))
    pool = PEERS_V4 if isinstance(target, IPv4Address) else PEERS_V6
    peer = ip_address(draw(st.sampled_from(pool)))
    direction = draw(st.sampled_from(["Inbound", "Outbound"]))
    src, dst = (peer, target) if direction == "Inbound" else (target, peer)
    port = draw(st.one_of(st.sampled_from(EDGE_PORTS), st.integers(0, 65535)))
    src_port = draw(st.sampled_from([49152, 123, 1024, 65535]))
    protocol = draw(st.sampled_from(["Tcp", "Udp", "Icmp"]))
    return direction, Packet(src, dst, port, protocol, src_port)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=security_rules(), cases=st.lists(packets(), min_size=1, max_size=10))
def test_single_nsg_agrees_with_literal_reference(
    rules: list[SecurityRule], cases: list[tuple[str, Packet]]
) -> None:
    ev = NsgEvaluator(INVENTORY, {WEB_SUBNET_NSG: rules}, service_tag_ranges=TAG_RANGES)
    for direction, packet in cases:
        target = packet.dst_ip if direction == "Inbound" else packet.src_ip
        name, access = reference_nsg(INVENTORY, rules, direction, target, packet, TAG_RANGES)
        verdict = ev.decide(packet)
        expected = (Hop(WEB_SUBNET_NSG, name, Access(access), "subnet"),)
        assert verdict.allowed == (access == "Allow"), (packet, name)
        if direction == "Inbound":
            assert (verdict.outbound, verdict.inbound) == ((), expected), packet
        else:
            assert (verdict.outbound, verdict.inbound) == (expected, ()), packet
    assert ev.unknown_service_tags <= {"Sql.WestEurope"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subnet_rules=security_rules(5), nic_rules=security_rules(5),
       peer=st.sampled_from(PEERS_V4), inbound=st.booleans(),
       port=st.sampled_from([22, 53, 80, 443, 3389]),
       protocol=st.sampled_from(["Tcp", "Udp", "Icmp"]))
def test_two_nsgs_compose_in_azure_order(subnet_rules: list[SecurityRule],
                                         nic_rules: list[SecurityRule], peer: str,
                                         inbound: bool, port: int, protocol: str) -> None:
    """web4 has a subnet NSG and a NIC NSG: inbound subnet then NIC, outbound NIC then subnet,
    stopping at the first deny."""
    web4 = ip_address("10.1.1.7")
    other = ip_address(peer)
    packet = Packet(other, web4, port, protocol) if inbound else Packet(web4, other, port,
                                                                         protocol)
    direction = "Inbound" if inbound else "Outbound"
    ev = NsgEvaluator(INVENTORY, {WEB_SUBNET_NSG: subnet_rules, WEB_NIC_NSG: nic_rules},
                      service_tag_ranges=TAG_RANGES)

    order = [(WEB_SUBNET_NSG, subnet_rules, "subnet"), (WEB_NIC_NSG, nic_rules, "nic")]
    if not inbound:
        order.reverse()
    expected: list[Hop] = []
    for nsg, rules, level in order:
        name, access = reference_nsg(INVENTORY, rules, direction, web4, packet, TAG_RANGES)
        expected.append(Hop(nsg, name, Access(access), level))  # type: ignore[arg-type]
        if access != "Allow":
            break
    verdict = ev.decide(packet)
    assert verdict.allowed == all(h.access is Access.ALLOW for h in expected)
    assert (verdict.inbound if inbound else verdict.outbound) == tuple(expected)
