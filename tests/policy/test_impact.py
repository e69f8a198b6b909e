"""The impact index is sound: after any single resource change, every NSG whose compiled rules
change is among the NSGs it names (checked against two full compiles), on the sample estate and
sample policy, over seeded random changes; and it stays in step over a sequence of changes."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from shared.domain.arm_id import key
from shared.domain.normalize import normalize
from shared.policy.compiler import compile_policy
from shared.policy.impact import ImpactIndex
from shared.policy.loader import load_policy_file
from shared.policy.model import (
    BUILTIN_ANY,
    Action,
    EnforcementPoint,
    OutboundPosture,
    Policy,
    PortRange,
    Posture,
    Protocol,
    Rule,
)
from shared.sample.estate import ESTATE_JSON_PATH, classic_estate

POLICY = load_policy_file(ESTATE_JSON_PATH.parent / "policy.yaml").policy
assert POLICY is not None
NIC, VM, VNET = ("microsoft.network/networkinterfaces", "microsoft.compute/virtualmachines",
                 "microsoft.network/virtualnetworks")


def desired(policy: Policy, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    compiled = compile_policy(policy, normalize(rows))
    return {nsg: sorted(r.to_arm().items().__repr__() for r in rules)  # type: ignore[misc]
            for nsg, rules in compiled.rules.items()}


def changed_nsgs(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> set[str]:
    return {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}


def of_type(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["type"] == kind]


def mutate(rows: list[dict[str, Any]], rng: random.Random,
           ) -> tuple[str, str, dict[str, Any] | None]:
    """Change one resource in place (or delete it); returns (type, id, new row or None)."""
    vms, nics, vnets = of_type(rows, VM), of_type(rows, NIC), of_type(rows, VNET)
    subnets = [s["id"] for v in vnets for s in v["properties"]["subnets"]]
    nsgs = sorted({r["id"] for r in rows if r["type"].endswith("networksecuritygroups")})
    tag_values = sorted({(k, v) for r in vms + nics for k, v in (r.get("tags") or {}).items()
                         if k in {"app", "tier", "role", "env", "cluster"}})
    asgs = sorted(r["id"] for r in rows if r["type"].endswith("applicationsecuritygroups"))
    choice = rng.choice(["vm-tags", "nic-tags", "nic-move", "nic-delete", "nic-asg",
                         "subnet-nsg", "vm-delete", "nic-ip"])
    if choice in ("vm-tags", "vm-delete"):
        vm = rng.choice(vms)
        if choice == "vm-delete":
            rows.remove(vm)
            return VM, vm["id"], None
        name, value = rng.choice(tag_values)
        vm["tags"] = {**(vm.get("tags") or {}), name: value}
        return VM, vm["id"], vm
    if choice == "subnet-nsg":
        vnet = rng.choice(vnets)
        subnet = rng.choice(vnet["properties"]["subnets"])
        target = rng.choice([*nsgs, None])
        if target is None:
            subnet["properties"].pop("networkSecurityGroup", None)
        else:
            subnet["properties"]["networkSecurityGroup"] = {"id": target}
        return VNET, vnet["id"], vnet
    nic = rng.choice(nics)
    config = nic["properties"]["ipConfigurations"][0]["properties"]
    if choice == "nic-delete":
        rows.remove(nic)
        return NIC, nic["id"], None
    if choice == "nic-tags":
        name, value = rng.choice(tag_values)
        nic["tags"] = {**(nic.get("tags") or {}), name: value}
    elif choice == "nic-move":
        config["subnet"] = {"id": rng.choice(subnets)}
    elif choice == "nic-asg":
        current = config.get("applicationSecurityGroups") or []
        config["applicationSecurityGroups"] = [] if current else [{"id": rng.choice(asgs)}]
    else:  # nic-ip: an address nobody else holds
        config["privateIPAddress"] = f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}.9"
    return NIC, nic["id"], nic


@pytest.mark.parametrize("enforcement", list(EnforcementPoint))
@pytest.mark.parametrize("outbound", [OutboundPosture.ALLOW, OutboundPosture.DEFAULT_DENY])
def test_every_changed_nsg_is_named(enforcement: EnforcementPoint,
                                    outbound: OutboundPosture) -> None:
    policy = Policy(Posture(POLICY.posture.inbound, outbound), enforcement,
                    POLICY.groups, POLICY.rules, POLICY.ownership)
    rng = random.Random(11)
    for _ in range(30):
        rows = copy.deepcopy(classic_estate())
        index = ImpactIndex(policy, normalize(rows))
        before = desired(policy, rows)
        kind, resource_id, row = mutate(rows, rng)
        impact = index.apply(kind, resource_id, row)
        missed = changed_nsgs(before, desired(policy, rows)) - impact.nsgs
        assert not missed, f"{kind} {resource_id}: {sorted(missed)} changed but not named"


def test_the_index_stays_in_step_over_many_changes() -> None:
    rng = random.Random(5)
    rows = copy.deepcopy(classic_estate())
    index = ImpactIndex(POLICY, normalize(rows))
    for _ in range(40):
        before = desired(POLICY, rows)
        kind, resource_id, row = mutate(rows, rng)
        impact = index.apply(kind, resource_id, row)
        missed = changed_nsgs(before, desired(POLICY, rows)) - impact.nsgs
        assert not missed, f"{kind} {resource_id}: {sorted(missed)} changed but not named"
    fresh = ImpactIndex(POLICY, normalize(rows))
    for group in POLICY.groups:
        assert index.nsgs_of_group(group.name) == fresh.nsgs_of_group(group.name), group.name


def test_an_unrelated_change_names_no_nsg() -> None:
    rows = copy.deepcopy(classic_estate())
    index = ImpactIndex(POLICY, normalize(rows))
    vm = of_type(rows, VM)[0]
    vm["tags"] = {**vm["tags"], "backup": "daily"}  # no selector looks at it
    impact = index.apply(VM, vm["id"], vm)
    assert impact.groups == set()
    nic_nsgs = {key(n) for n in impact.nsgs}
    assert nic_nsgs <= {key(r["id"]) for r in rows if r["type"].endswith("securitygroups")}


WIDE_RULES = (
    Rule("dns-from-everyone", 1, BUILTIN_ANY, "dns", (PortRange(53, 53),), Protocol.UDP,
         Action.ALLOW),
    Rule("web-to-everyone", 2, "web", "VirtualNetwork", (PortRange(8080, 8080),), Protocol.TCP,
         Action.ALLOW),
)


@pytest.mark.parametrize("outbound", [OutboundPosture.ALLOW, OutboundPosture.DEFAULT_DENY])
def test_rules_to_and_from_everyone_are_followed(outbound: OutboundPosture) -> None:
    """``any`` and ``VirtualNetwork`` put a rule on every managed NSG: a change to the group on
    the other side touches them all, and a newly managed NSG needs them."""
    policy = Policy(Posture(POLICY.posture.inbound, outbound), POLICY.enforcement,
                    POLICY.groups, WIDE_RULES, POLICY.ownership)
    rng = random.Random(3)
    named_all = 0
    for _ in range(40):
        rows = copy.deepcopy(classic_estate())
        index = ImpactIndex(policy, normalize(rows))
        before = desired(policy, rows)
        kind, resource_id, row = mutate(rows, rng)
        impact = index.apply(kind, resource_id, row)
        changed = changed_nsgs(before, desired(policy, rows))
        missed = changed - impact.nsgs
        assert not missed, f"{kind} {resource_id}: {sorted(missed)} changed but not named"
        named_all += len(changed) > 3
    assert named_all  # some change did reach beyond the NSGs in front of it


def test_a_group_that_reaches_everyone_touches_every_managed_nsg() -> None:
    policy = Policy(POLICY.posture, POLICY.enforcement, POLICY.groups, WIDE_RULES,
                    POLICY.ownership)  # no rule but these names web as anyone's peer
    rows = copy.deepcopy(classic_estate())
    index = ImpactIndex(policy, normalize(rows))
    before = desired(policy, rows)
    web_asg = next(r["id"] for r in rows if r["type"].endswith("applicationsecuritygroups")
                   and r["name"].lower() == "web")
    nic = next(n for n in of_type(rows, NIC) if not (n["properties"]["ipConfigurations"][0][
        "properties"].get("applicationSecurityGroups")))
    nic["properties"]["ipConfigurations"][0]["properties"]["applicationSecurityGroups"] = [
        {"id": web_asg}]
    impact = index.apply(NIC, nic["id"], nic)
    changed = changed_nsgs(before, desired(policy, rows))
    assert len(changed) > 3  # web's new address is in the rule on every managed NSG
    assert changed <= impact.nsgs, sorted(changed - impact.nsgs)
