"""The normalizer against realistic ARM JSON in the shapes met in the wild."""

from __future__ import annotations

import copy
import json
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from shared.domain.assets import Access, Direction
from shared.domain.normalize import SnapshotError, normalize, rows_from_document

DATA = Path(__file__).parent.parent / "data" / "arm"
SUB = "5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-payroll-network/providers/Microsoft.Network"
WEB_SUBNET = f"{NET}/virtualNetworks/payroll-vnet/subnets/web"
WEB_NIC = (f"/subscriptions/{SUB}/resourceGroups/rg-payroll-web/providers/Microsoft.Network/"
           "networkInterfaces/vm-web-01-nic")


def graph_rows() -> list[Any]:
    return rows_from_document(json.loads((DATA / "resource_graph_rows.json").read_text()))


def flattened_rows() -> list[Any]:
    rows: list[Any] = json.loads((DATA / "sdk_flattened.json").read_text())
    return rows


def test_resource_graph_rows_load_completely() -> None:
    inventory = normalize(graph_rows())

    assert inventory.report.skipped == ()
    assert inventory.report.unknown_types == ()
    assert inventory.counts() == {
        "subscriptions": 1, "resource_groups": 1, "vnets": 1, "subnets": 2, "nics": 1,
        "asgs": 1, "nsgs": 1, "vms": 1, "private_endpoints": 0, "public_ips": 0,
    }
    sub = inventory.subscriptions[SUB]
    assert sub.display_name == "Payroll-Prod"
    assert sub.state == "Enabled"


def test_ip_lookup_walks_nic_subnet_vnet_subscription() -> None:
    inventory = normalize(graph_rows())

    (where,) = inventory.locate_ip("10.10.1.4")
    assert where.nic.name == "vm-web-01-nic"
    assert where.nic.mac_address == "00224871C205"
    assert where.subnet is not None and where.subnet.name == "web"
    assert where.vnet is not None and where.vnet.name == "payroll-vnet"
    assert where.subscription_id == SUB
    assert where.ip_configuration.public_ip_id is not None
    assert inventory.vm_of(where.nic) is not None
    assert inventory.locate_ip("10.10.1.5") == ()


def test_vnet_details_subnets_peerings_delegations() -> None:
    inventory = normalize(graph_rows())

    vnet = next(iter(inventory.vnets.values()))
    assert vnet.address_prefixes == (ip_network("10.10.0.0/16"),)
    (peering,) = vnet.peerings
    assert peering.remote_vnet_id.endswith("/virtualNetworks/hub-vnet")
    assert peering.state == "Connected"
    assert peering.use_remote_gateways and not peering.allow_gateway_transit
    mi = inventory.subnets[f"{NET}/virtualNetworks/payroll-vnet/subnets/sql-mi".lower()]
    assert mi.delegations == ("Microsoft.Sql/managedInstances",)
    assert mi.address_prefixes == (ip_network("10.10.8.0/26"), ip_network("fd00:10:8::/64"))
    assert inventory.vnet_of(mi.id) == vnet


def test_nsg_rules_merge_singular_and_plural_fields() -> None:
    inventory = normalize(graph_rows())

    nsg = next(iter(inventory.nsgs.values()))
    assert nsg.etag == 'W/"5c1e0f2a-8e0b-4bb5-9c1d-7f3e2a1b0c99"'
    https, rdp = nsg.rules
    assert https.destination_ports == ("443",)
    assert https.source_prefixes == ("Internet",)
    assert https.destination_prefixes == ()  # empty singular string is "unset", not a prefix
    assert len(https.destination_asg_ids) == 1
    assert rdp.protocol == "Tcp"  # "TCP" normalised once, here
    assert rdp.destination_ports == ("3389", "5985-5986")
    assert rdp.source_prefixes == ("10.0.2.4/32", "10.0.2.5/32")
    assert [r.priority for r in nsg.default_rules] == [65000, 65001, 65500] * 2
    assert all(r.is_default for r in nsg.default_rules)
    assert {r.direction for r in nsg.default_rules} == {Direction.INBOUND, Direction.OUTBOUND}
    assert nsg.default_rules[2].access is Access.DENY
    assert [s.name for s in inventory.nsg_subnets(nsg.id)] == ["web"]


def test_asg_membership_is_case_insensitive() -> None:
    inventory = normalize(graph_rows())

    asg_id = f"{NET}/applicationSecurityGroups/Web".upper()
    assert [m.ip for m in inventory.asg_members(asg_id)] == [ip_address("10.10.1.4")]


def test_sdk_flattened_shapes_camel_and_snake() -> None:
    inventory = normalize(graph_rows() + flattened_rows())

    assert inventory.report.skipped == ()
    app1 = inventory.nics[f"/subscriptions/{SUB}/resourcegroups/rg-payroll-app/providers/"
                          "microsoft.network/networkinterfaces/vm-app-01-nic"]
    assert app1.resource_group == "rg-payroll-app"
    assert app1.mac_address == "000D3A2B4C6D"
    assert [str(c.private_ip) for c in app1.ip_configurations] == ["10.10.2.4", "10.10.2.5"]
    assert app1.ip_configurations[0].primary and not app1.ip_configurations[1].primary
    assert app1.nsg_id is not None and app1.nsg_id.endswith("nsg-vm-app-01")
    (where,) = inventory.locate_ip("10.10.2.6")
    assert where.nic.name == "vm-app-02-nic"
    assert where.nic.resource_group == "rg-payroll-app"  # derived from the id
    assert dict(where.nic.tags)["env"] == "dev"
    logic = f"{NET}/applicationSecurityGroups/Logic"
    assert sorted(str(m.ip) for m in inventory.asg_members(logic)) == ["10.10.2.4", "10.10.2.6"]
    nsg = inventory.nsgs[f"{NET}/networkSecurityGroups/nsg-vm-app-01".lower()]
    assert nsg.rules[0].access is Access.DENY
    assert [n.name for n in inventory.nsg_nics(nsg.id)] == ["vm-app-01-nic"]


def test_nested_and_flattened_forms_of_one_resource_normalize_equal() -> None:
    nested = next(r for r in graph_rows() if r["id"] == WEB_NIC)
    flat = {k: v for k, v in nested.items() if k != "properties"} | nested["properties"]
    flat["ipConfigurations"] = [
        {k: v for k, v in cfg.items() if k != "properties"} | cfg["properties"]
        for cfg in nested["properties"]["ipConfigurations"]
    ]
    assert normalize([nested]).nics == normalize([flat]).nics


def test_malformed_nic_is_reported_and_the_rest_loads() -> None:
    rows = graph_rows()
    nic = next(r for r in rows if r["id"] == WEB_NIC)
    nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = "10.10.1.999"

    inventory = normalize(rows)

    (skipped,) = inventory.report.skipped
    assert skipped.resource_id == WEB_NIC
    assert skipped.type == "microsoft.network/networkinterfaces"
    assert skipped.field == "ipConfigurations[0].privateIPAddress"
    assert "10.10.1.999" in skipped.reason
    assert inventory.counts()["nics"] == 0
    assert inventory.counts()["vnets"] == 1 and inventory.counts()["nsgs"] == 1
    # the VM still points at the NIC that was skipped: that is reported too
    assert any(d.target_id == WEB_NIC for d in inventory.report.dangling)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda n: n["properties"].__setitem__("ipConfigurations", "oops"), "ipConfigurations"),
        (lambda n: n["properties"].__setitem__("ipConfigurations", []), "ipConfigurations"),
        (lambda n: n["properties"].__setitem__("macAddress", "zz-zz"), "macAddress"),
        (lambda n: n["properties"]["ipConfigurations"][0]["properties"].__setitem__(
            "applicationSecurityGroups", [{"name": "no-id"}]),
         "ipConfigurations[0].applicationSecurityGroups[0].id"),
        (lambda n: n["properties"]["ipConfigurations"].__setitem__(0, 42),
         "ipConfigurations[0]"),
    ],
)
def test_each_malformed_field_is_named(mutate: Any, field: str) -> None:
    nic = copy.deepcopy(next(r for r in graph_rows() if r["id"] == WEB_NIC))
    mutate(nic)

    (skipped,) = normalize([nic]).report.skipped
    assert skipped.field == field


def test_bad_rule_enum_names_the_rule_field() -> None:
    nsg = copy.deepcopy(next(r for r in graph_rows() if "networkSecurityGroups" in r["id"]))
    nsg["properties"]["securityRules"][1]["properties"]["direction"] = "Sideways"

    (skipped,) = normalize([nsg]).report.skipped
    assert skipped.field == "securityRules[1].direction"
    assert "Sideways" in skipped.reason


def test_rows_without_id_non_objects_and_unknown_types_are_counted() -> None:
    rows: list[Any] = [
        "not an object",
        {"name": "no-id", "type": "microsoft.network/networkinterfaces"},
        {"id": "not-an-arm-id", "type": "microsoft.network/networkinterfaces"},
        {"id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app1",
         "type": "Microsoft.Web/sites"},
        {"id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app2",
         "type": "microsoft.web/sites"},
    ]
    inventory = normalize(rows)

    assert [(s.resource_id, s.field) for s in inventory.report.skipped] == [
        ("<row 0>", "(row)"), ("<row 1>", "id"), ("not-an-arm-id", "id"),
    ]
    assert inventory.report.unknown_types == (("microsoft.web/sites", 2),)
    assert inventory.report.total_rows == 5
    assert inventory.counts()["subscriptions"] == 0  # unknown types imply nothing


def test_duplicates_keep_the_last_copy() -> None:
    rows = graph_rows()
    nic = copy.deepcopy(next(r for r in rows if r["id"] == WEB_NIC))
    nic["id"] = nic["id"].upper()
    nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = "10.10.1.40"

    inventory = normalize([*rows, nic])

    assert inventory.report.duplicates == 1
    assert inventory.counts()["nics"] == 1
    assert inventory.locate_ip("10.10.1.40") and not inventory.locate_ip("10.10.1.4")


def test_subscription_listing_without_type_and_implied_subscriptions() -> None:
    other = "0a9e8d7c-6b5a-4f3e-2d1c-0b9a8f7e6d5c"
    rows: list[Any] = [
        {"id": f"/subscriptions/{SUB}", "subscriptionId": SUB, "displayName": "Payroll-Prod",
         "state": "Enabled"},
        {"id": f"/subscriptions/{other}/resourceGroups/rg/providers/Microsoft.Network/"
               "applicationSecurityGroups/Hub",
         "type": "microsoft.network/applicationsecuritygroups"},
    ]
    inventory = normalize(rows)

    assert inventory.subscription_name(SUB) == "Payroll-Prod"
    assert inventory.subscriptions[other].display_name is None
    assert inventory.subscription_name(other) == other


def test_standalone_subnet_row_overrides_the_embedded_copy() -> None:
    rows = graph_rows()
    rows.append({
        "id": WEB_SUBNET, "name": "web", "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": {"addressPrefix": "10.10.1.0/25"},
    })
    inventory = normalize(rows)

    subnet = inventory.subnets[WEB_SUBNET.lower()]
    assert subnet.address_prefixes == (ip_network("10.10.1.0/25"),)
    assert subnet.nsg_id is None
    assert subnet.vnet_id.endswith("/virtualNetworks/payroll-vnet")


@pytest.mark.parametrize("document", [{"value": []}, {"data": []}, []])
def test_snapshot_documents(document: Any) -> None:
    assert rows_from_document(document) == []


@pytest.mark.parametrize("document", [{"rows": []}, "text", 3])
def test_bad_snapshot_documents(document: Any) -> None:
    with pytest.raises(SnapshotError):
        rows_from_document(document)
