"""ARM id parsing and case-insensitive identity."""

from __future__ import annotations

import pytest

from shared.domain import arm_id

SUB = "5f0c4a3e-8b1d-4e2a-9c6f-1a2b3c4d5e6f"
SUBNET = (f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/"
          "virtualNetworks/payroll-vnet/subnets/web")


def test_parse_nested_resource() -> None:
    parsed = arm_id.parse(SUBNET)
    assert parsed.subscription_id == SUB
    assert parsed.resource_group == "rg-net"
    assert parsed.namespace == "Microsoft.Network"
    assert parsed.types == ("virtualNetworks", "subnets")
    assert parsed.names == ("payroll-vnet", "web")
    assert parsed.name == "web"
    assert parsed.full_type == "microsoft.network/virtualnetworks/subnets"


def test_containers() -> None:
    assert arm_id.parse(f"/subscriptions/{SUB}").full_type == "microsoft.resources/subscriptions"
    rg = arm_id.parse(f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG-NET/")
    assert rg.full_type == "microsoft.resources/subscriptions/resourcegroups"
    assert rg.name == "RG-NET"


def test_key_is_case_and_trailing_slash_insensitive() -> None:
    assert arm_id.key(SUBNET.upper() + "/") == arm_id.key(SUBNET)


def test_parent_id() -> None:
    assert arm_id.parent_id(SUBNET).endswith("/virtualNetworks/payroll-vnet")
    with pytest.raises(arm_id.InvalidArmId):
        arm_id.parent_id(arm_id.parent_id(SUBNET))


@pytest.mark.parametrize("bad", [
    "", "subscriptions/x", "/tenants/x", "/subscriptions/", f"/subscriptions/{SUB}/resourceGroups/",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks",
    f"/subscriptions/{SUB}/resourceGroups/rg/foo/bar",
])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(arm_id.InvalidArmId):
        arm_id.parse(bad)
