"""The sample estates: Resource Graph row shapes, determinism and referential integrity."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterator
from itertools import combinations
from typing import Any

import pytest

from shared.sample import estate as sample
from shared.sample.estate import (
    ASG_TYPE,
    ESTATE_JSON_PATH,
    NIC_TYPE,
    NSG_TYPE,
    PRIVATE_ENDPOINT_TYPE,
    PUBLIC_IP_TYPE,
    RESOURCE_GROUP_TYPE,
    SUBSCRIPTION_TYPE,
    VM_TYPE,
    VNET_TYPE,
    AddressPlanExhausted,
    classic_estate,
    estate_json,
    iter_scaled_estate,
    load_estate,
    scaled_estate,
)

Row = dict[str, Any]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAC = re.compile(r"^00-0D-3A(-[0-9A-F]{2}){3}$")
ROW_KEYS = {
    "id",
    "name",
    "type",
    "tenantId",
    "location",
    "resourceGroup",
    "subscriptionId",
    "tags",
    "properties",
}
DEFAULT_RULES = {
    ("AllowVnetInBound", "Inbound", 65000),
    ("AllowAzureLoadBalancerInBound", "Inbound", 65001),
    ("DenyAllInBound", "Inbound", 65500),
    ("AllowVnetOutBound", "Outbound", 65000),
    ("AllowInternetOutBound", "Outbound", 65001),
    ("DenyAllOutBound", "Outbound", 65500),
}


@pytest.fixture(scope="module")
def classic() -> list[Row]:
    return classic_estate()


@pytest.fixture(scope="module")
def scaled() -> list[Row]:
    return scaled_estate(3, 4, 25, seed=7)


@pytest.fixture(params=["classic", "scaled"])
def any_estate(request: pytest.FixtureRequest, classic: list[Row], scaled: list[Row]) -> list[Row]:
    return classic if request.param == "classic" else scaled


def of_type(rows: list[Row], rtype: str) -> list[Row]:
    return [row for row in rows if row["type"] == rtype]


def subnets(rows: list[Row]) -> Iterator[tuple[Row, Row]]:
    for vnet in of_type(rows, VNET_TYPE):
        for subnet in vnet["properties"]["subnets"]:
            yield vnet, subnet


def subnet_networks(subnet: Row) -> list[ipaddress.IPv4Network]:
    props = subnet["properties"]
    prefixes = props.get("addressPrefixes") or [props["addressPrefix"]]
    return [ipaddress.IPv4Network(p) for p in prefixes]


def primary_config(nic: Row) -> Row:
    configs = nic["properties"]["ipConfigurations"]
    config: Row = next(c for c in configs if c["properties"]["primary"])
    return config


# --- the committed file and determinism ------------------------------------------------------


def test_committed_estate_json_is_the_generator_output() -> None:
    assert ESTATE_JSON_PATH.read_text(encoding="utf-8") == estate_json(
        classic_estate()
    ), "shared/sample/data/estate.json is stale: run `python -m shared.sample write-estate`"


def test_estate_file_loads_as_az_graph_output(classic: list[Row]) -> None:
    document = json.loads(ESTATE_JSON_PATH.read_text(encoding="utf-8"))
    assert list(document) == ["data"]
    assert load_estate(ESTATE_JSON_PATH) == classic


def test_classic_estate_is_deterministic() -> None:
    assert estate_json(classic_estate()) == estate_json(classic_estate())


def test_scaled_estate_is_deterministic_per_seed() -> None:
    first = estate_json(scaled_estate(2, 3, 10, seed=1))
    assert first == estate_json(scaled_estate(2, 3, 10, seed=1))
    assert first != estate_json(scaled_estate(2, 3, 10, seed=2))


def test_iter_scaled_estate_yields_the_same_rows() -> None:
    assert list(iter_scaled_estate(2, 2, 9, seed=4)) == scaled_estate(2, 2, 9, seed=4)


# --- Resource Graph row shape ----------------------------------------------------------------


def test_rows_have_the_resource_graph_shape(any_estate: list[Row]) -> None:
    for row in any_estate:
        assert set(row) >= ROW_KEYS, row["id"]
        assert row["type"] == row["type"].lower()
        assert GUID.match(row["subscriptionId"]) and GUID.match(row["tenantId"])
        assert isinstance(row["tags"], dict) and isinstance(row["properties"], dict)
        if row["type"] == SUBSCRIPTION_TYPE:
            assert row["id"] == f"/subscriptions/{row['subscriptionId']}"
            assert row["properties"]["state"] == "Enabled"
            continue
        parts = row["id"].split("/")
        assert parts[1:4] == ["subscriptions", row["subscriptionId"], "resourceGroups"]
        assert parts[4] == row["resourceGroup"]
        assert parts[-1] == row["name"]
        if row["type"] != RESOURCE_GROUP_TYPE:
            assert parts[5] == "providers"
            assert "/".join(parts[6:8]).lower() == row["type"]  # ARM casing, same type


def test_ids_are_unique_case_insensitively(any_estate: list[Row]) -> None:
    ids = Counter(row["id"].lower() for row in any_estate)
    assert [i for i, n in ids.items() if n > 1] == []


def test_nsgs_carry_etag_and_the_six_default_rules(any_estate: list[Row]) -> None:
    for nsg in of_type(any_estate, NSG_TYPE):
        assert re.fullmatch(r'W/"[0-9a-f-]{36}"', nsg["etag"])
        defaults = nsg["properties"]["defaultSecurityRules"]
        got = {
            (r["name"], r["properties"]["direction"], r["properties"]["priority"]) for r in defaults
        }
        assert got == DEFAULT_RULES
        for rule in nsg["properties"]["securityRules"] + defaults:
            props = rule["properties"]
            assert rule["id"].lower().startswith(nsg["id"].lower() + "/")
            assert props["access"] in ("Allow", "Deny")
            assert props["direction"] in ("Inbound", "Outbound")
            assert props["protocol"] in ("Tcp", "Udp", "Icmp", "*")
            assert props["provisioningState"] == "Succeeded"
            assert "description" in props and "sourcePortRange" in props
            has_dst_port = "destinationPortRange" in props or props["destinationPortRanges"]
            assert has_dst_port
            for side in ("source", "destination"):
                addresses = (
                    f"{side}AddressPrefix" in props
                    or props[f"{side}AddressPrefixes"]
                    or props.get(f"{side}ApplicationSecurityGroups")
                )
                assert addresses, (rule["id"], side)
        user = nsg["properties"]["securityRules"]
        for direction in ("Inbound", "Outbound"):
            priorities = [
                r["properties"]["priority"]
                for r in user
                if r["properties"]["direction"] == direction
            ]
            assert len(priorities) == len(set(priorities))
            assert all(100 <= p <= 4096 for p in priorities)


# --- referential integrity -------------------------------------------------------------------


class Index:
    """Rows by lower-case id, and a lookup that asserts the referenced row exists."""

    def __init__(self, rows: list[Row]) -> None:
        self.by_id = {row["id"].lower(): row for row in rows}
        self.subnets = {s["id"].lower(): s for _, s in subnets(rows)}

    def target(self, ref: Row, rtype: str) -> Row:
        row = self.by_id.get(ref["id"].lower())
        assert row is not None and row["type"] == rtype, ref["id"]
        return row


def test_every_resource_lives_in_an_existing_group_and_subscription(any_estate: list[Row]) -> None:
    index = Index(any_estate)
    for row in any_estate:
        if row["type"] not in (SUBSCRIPTION_TYPE, RESOURCE_GROUP_TYPE):
            rg = f"/subscriptions/{row['subscriptionId']}/resourceGroups/{row['resourceGroup']}"
            index.target({"id": rg}, RESOURCE_GROUP_TYPE)
        if row["type"] != SUBSCRIPTION_TYPE:
            index.target({"id": f"/subscriptions/{row['subscriptionId']}"}, SUBSCRIPTION_TYPE)


def test_nic_references_resolve_both_ways(any_estate: list[Row]) -> None:
    index = Index(any_estate)
    for nic in of_type(any_estate, NIC_TYPE):
        props = nic["properties"]
        for config in props["ipConfigurations"]:
            cprops = config["properties"]
            subnet = index.subnets[cprops["subnet"]["id"].lower()]
            assert {"id": config["id"]} in subnet["properties"]["ipConfigurations"]
            for asg in cprops.get("applicationSecurityGroups", []):
                index.target(asg, ASG_TYPE)
            if "publicIPAddress" in cprops:
                pip = index.target(cprops["publicIPAddress"], PUBLIC_IP_TYPE)
                assert pip["properties"]["ipConfiguration"]["id"].lower() == config["id"].lower()
        if "virtualMachine" in props:
            vm = index.target(props["virtualMachine"], VM_TYPE)
            listed = vm["properties"]["networkProfile"]["networkInterfaces"]
            assert nic["id"].lower() in [n["id"].lower() for n in listed]
        if "privateEndpoint" in props:
            pe = index.target(props["privateEndpoint"], PRIVATE_ENDPOINT_TYPE)
            assert {"id": nic["id"]} in pe["properties"]["networkInterfaces"]
        if "networkSecurityGroup" in props:
            index.target(props["networkSecurityGroup"], NSG_TYPE)


def test_vm_references_resolve_both_ways(any_estate: list[Row]) -> None:
    index = Index(any_estate)
    for vm in of_type(any_estate, VM_TYPE):
        nics = vm["properties"]["networkProfile"]["networkInterfaces"]
        assert [n["properties"]["primary"] for n in nics].count(True) == 1
        for ref in nics:
            nic = index.target(ref, NIC_TYPE)
            assert nic["properties"]["virtualMachine"]["id"].lower() == vm["id"].lower()


def test_private_endpoint_and_public_ip_references_resolve(any_estate: list[Row]) -> None:
    index = Index(any_estate)
    for pe in of_type(any_estate, PRIVATE_ENDPOINT_TYPE):
        props = pe["properties"]
        assert props["subnet"]["id"].lower() in index.subnets
        for ref in props["networkInterfaces"]:
            index.target(ref, NIC_TYPE)
        for connection in props["privateLinkServiceConnections"]:
            assert connection["properties"]["privateLinkServiceId"].lower() in index.by_id
    for pip in of_type(any_estate, PUBLIC_IP_TYPE):
        nic_id = pip["properties"]["ipConfiguration"]["id"].split("/ipConfigurations/")[0]
        index.target({"id": nic_id}, NIC_TYPE)


def test_rule_asgs_and_peered_vnets_resolve(any_estate: list[Row]) -> None:
    index = Index(any_estate)
    for nsg in of_type(any_estate, NSG_TYPE):
        for rule in nsg["properties"]["securityRules"]:
            for side in ("source", "destination"):
                for asg in rule["properties"].get(f"{side}ApplicationSecurityGroups", []):
                    index.target(asg, ASG_TYPE)
    for vnet in of_type(any_estate, VNET_TYPE):
        for peering in vnet["properties"]["virtualNetworkPeerings"]:
            index.target(peering["properties"]["remoteVirtualNetwork"], VNET_TYPE)


def test_nsg_attachments_agree_in_both_directions(any_estate: list[Row]) -> None:
    from_subnets = {
        (s["properties"]["networkSecurityGroup"]["id"].lower(), s["id"].lower())
        for _, s in subnets(any_estate)
        if "networkSecurityGroup" in s["properties"]
    }
    from_nsgs = {
        (nsg["id"].lower(), ref["id"].lower())
        for nsg in of_type(any_estate, NSG_TYPE)
        for ref in nsg["properties"]["subnets"]
    }
    assert from_subnets == from_nsgs
    assert from_subnets, "the estate should protect subnets with NSGs"


def test_asg_members_share_one_vnet(any_estate: list[Row]) -> None:
    """Azure binds an ASG to the VNet of its first member; the sample must respect that."""
    vnets_per_asg: dict[str, set[str]] = {}
    for nic in of_type(any_estate, NIC_TYPE):
        for config in nic["properties"]["ipConfigurations"]:
            vnet = config["properties"]["subnet"]["id"].lower().split("/subnets/")[0]
            for asg in config["properties"].get("applicationSecurityGroups", []):
                vnets_per_asg.setdefault(asg["id"].lower(), set()).add(vnet)
    assert vnets_per_asg
    assert all(len(vnets) == 1 for vnets in vnets_per_asg.values())


# --- address plan ----------------------------------------------------------------------------


def test_vnet_address_spaces_do_not_overlap(any_estate: list[Row]) -> None:
    spaces = [
        (vnet["name"], ipaddress.IPv4Network(prefix))
        for vnet in of_type(any_estate, VNET_TYPE)
        for prefix in vnet["properties"]["addressSpace"]["addressPrefixes"]
    ]
    overlapping = [(a, b) for (a, x), (b, y) in combinations(spaces, 2) if x.overlaps(y)]
    assert overlapping == []
    assert all(net.is_private for _, net in spaces)


def test_subnets_fit_their_vnet_without_overlap(any_estate: list[Row]) -> None:
    for vnet in of_type(any_estate, VNET_TYPE):
        prefixes = vnet["properties"]["addressSpace"]["addressPrefixes"]
        space = [ipaddress.IPv4Network(p) for p in prefixes]
        nets = [net for s in vnet["properties"]["subnets"] for net in subnet_networks(s)]
        assert all(any(net.subnet_of(outer) for outer in space) for net in nets), vnet["name"]
        assert not any(a.overlaps(b) for a, b in combinations(nets, 2)), vnet["name"]


def test_nic_ips_sit_in_their_subnet_and_are_unique_per_vnet(any_estate: list[Row]) -> None:
    subnet_by_id = {s["id"].lower(): s for _, s in subnets(any_estate)}
    ips_per_vnet: dict[str, list[str]] = {}
    for nic in of_type(any_estate, NIC_TYPE):
        for config in nic["properties"]["ipConfigurations"]:
            subnet_id = config["properties"]["subnet"]["id"].lower()
            ip = ipaddress.IPv4Address(config["properties"]["privateIPAddress"])
            usable = [
                net
                for net in subnet_networks(subnet_by_id[subnet_id])
                if net.network_address + 3 < ip < net.broadcast_address
            ]
            assert usable, (nic["name"], str(ip))
            ips_per_vnet.setdefault(subnet_id.split("/subnets/")[0], []).append(str(ip))
    for vnet, ips in ips_per_vnet.items():
        assert len(ips) == len(set(ips)), vnet


def test_macs_are_azure_macs_and_unique(any_estate: list[Row]) -> None:
    macs = [
        nic["properties"]["macAddress"]
        for nic in of_type(any_estate, NIC_TYPE)
        if "privateEndpoint" not in nic["properties"]
    ]
    assert macs and all(MAC.match(mac) for mac in macs)
    assert len(macs) == len(set(macs))


def test_peerings_are_symmetric_and_connected(any_estate: list[Row]) -> None:
    vnets = {v["id"].lower(): v for v in of_type(any_estate, VNET_TYPE)}
    links = set()
    for vnet_id, vnet in vnets.items():
        for peering in vnet["properties"]["virtualNetworkPeerings"]:
            props = peering["properties"]
            assert props["peeringState"] == "Connected"
            remote = props["remoteVirtualNetwork"]["id"].lower()
            assert remote in vnets
            remote_space = vnets[remote]["properties"]["addressSpace"]["addressPrefixes"]
            assert props["remoteAddressSpace"]["addressPrefixes"] == remote_space
            links.add((vnet_id, remote))
    assert links, "the estate should be peered"
    assert {(b, a) for a, b in links} == links


# --- the classic estate as described ---------------------------------------------------------


def test_classic_estate_has_the_described_layout(classic: list[Row]) -> None:
    nics = of_type(classic, NIC_TYPE)
    assert 40 <= len(nics) <= 70
    names = {row["name"] for row in of_type(classic, SUBSCRIPTION_TYPE)}
    assert names == {"Connectivity-Hub", "Payroll-Prod", "ERP-Prod", "Analytics"}
    vnets = {v["name"]: v for v in of_type(classic, VNET_TYPE)}
    spaces = {name: v["properties"]["addressSpace"]["addressPrefixes"] for name, v in vnets.items()}
    assert spaces == {
        "hub-vnet": ["10.0.0.0/16"],
        "payroll-vnet": ["10.10.0.0/16"],
        "erp-vnet": ["10.20.0.0/16"],
        "hdi-vnet": ["10.30.0.0/16"],
    }
    hub_peers = {
        p["properties"]["remoteVirtualNetwork"]["id"].split("/")[-1]
        for p in vnets["hub-vnet"]["properties"]["virtualNetworkPeerings"]
    }
    assert hub_peers == {"payroll-vnet", "erp-vnet", "hdi-vnet"}
    assert {a["name"] for a in of_type(classic, ASG_TYPE)} == {"Web", "Logic", "SAP"}
    rgs_per_sub = Counter(r["subscriptionId"] for r in of_type(classic, RESOURCE_GROUP_TYPE))
    assert min(rgs_per_sub.values()) >= 3


def test_classic_spokes_resolve_names_through_the_hub_dns_servers(classic: list[Row]) -> None:
    dns_ips = sorted(
        primary_config(nic)["properties"]["privateIPAddress"]
        for nic in of_type(classic, NIC_TYPE)
        if nic["tags"].get("role") == "dns"
    )
    for vnet in of_type(classic, VNET_TYPE):
        servers = vnet["properties"]["dhcpOptions"]["dnsServers"]
        assert servers == ([] if vnet["name"] == "hub-vnet" else dns_ips), vnet["name"]


def test_classic_estate_tags_cover_selectors(classic: list[Row]) -> None:
    vms = of_type(classic, VM_TYPE)
    tags = [vm["tags"] for vm in vms]
    assert {"app", "env", "tier", "owner", "cost-center"} <= set().union(*tags)
    assert {t["env"] for t in tags} == {"prod", "dev"}
    assert {"web", "app", "db"} <= {t["tier"] for t in tags}
    assert {"sap", "hdinsight", "payroll"} <= {t["app"] for t in tags}
    assert all("@" in t["owner"] for t in tags)
    views = [vm["properties"]["extended"]["instanceView"] for vm in vms]
    states = Counter(view["powerState"]["code"] for view in views)
    assert states["PowerState/deallocated"] >= 1


def test_classic_estate_has_the_special_resources(classic: list[Row]) -> None:
    pips = of_type(classic, PUBLIC_IP_TYPE)
    assert [p["properties"]["ipAddress"] for p in pips] == [sample.PAYROLL_WEB_PUBLIC_IP]
    all_subnets = [s for _, s in subnets(classic)]
    delegated = [s for s in all_subnets if s["properties"]["delegations"]]
    assert [
        d["properties"]["serviceName"] for s in delegated for d in s["properties"]["delegations"]
    ] == ["Microsoft.Web/serverFarms"]
    assert any("addressPrefixes" in s["properties"] for s in all_subnets)
    pe_nics = [n for n in of_type(classic, NIC_TYPE) if "privateEndpoint" in n["properties"]]
    assert len(pe_nics) == len(of_type(classic, PRIVATE_ENDPOINT_TYPE)) >= 1
    multi_nic = [
        vm
        for vm in of_type(classic, VM_TYPE)
        if len(vm["properties"]["networkProfile"]["networkInterfaces"]) > 1
    ]
    assert multi_nic
    unattached = [n for n in of_type(classic, NIC_TYPE) if "virtualMachine" not in n["properties"]]
    assert unattached == pe_nics


# --- the scaled estate -----------------------------------------------------------------------


def test_scaled_estate_has_the_requested_size_and_spread(scaled: list[Row]) -> None:
    nics = of_type(scaled, NIC_TYPE)
    assert len(nics) == 3 * 4 * 25
    assert len(of_type(scaled, SUBSCRIPTION_TYPE)) == 3
    assert len(of_type(scaled, VNET_TYPE)) == 12
    assert len(of_type(scaled, NSG_TYPE)) == 12 * 3
    vms = of_type(scaled, VM_TYPE)
    assert 0.7 * len(nics) <= len(vms) < len(nics)
    assert len({n["tags"]["app"] for n in nics}) >= 4
    assert {n["tags"]["tier"] for n in nics} == {"web", "app", "db"}
    memberships = Counter(
        len(primary_config(n)["properties"]["applicationSecurityGroups"]) for n in nics
    )
    assert len(memberships) >= 2, "some NICs should be in more than one ASG"
    roles = Counter(n["tags"].get("role") for n in nics)
    assert roles["dns"] == 2 * 3 and roles["jumphost"] == 3


def test_scaled_estate_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        scaled_estate(0, 1, 1)


def test_address_allocator_spills_over_pools_then_gives_up() -> None:
    allocator = sample._Allocator(sample.SCALED_POOLS)
    blocks = [allocator.block(10) for _ in range(5)]
    assert [str(b) for b in blocks] == [
        "10.0.0.0/10",
        "10.64.0.0/10",
        "10.128.0.0/10",
        "10.192.0.0/10",
        "100.64.0.0/10",
    ]
    assert str(allocator.block(12)) == "172.16.0.0/12"
    with pytest.raises(AddressPlanExhausted):
        allocator.block(12)
