"""The plan view: ``Plan.as_dict()`` (or a stored plan document) -> per-NSG rows (pure).

The plan JSON is documented in docs/policy.md: ``{"nsgs": [{"id", "add": [rule], "change":
[rule], "remove": [name], "desired": [rule], "errors", "warnings"}], "warnings", "errors"}``
with ``rule`` in ARM securityRule JSON. The report shows each NSG's changes as readable rows;
``desired`` is summarized by its size only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain.arm_id import InvalidArmId, parse
from shared.report.findings import portal_url


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _side(props: Mapping[str, Any], side: str) -> str:
    asgs = _list(props.get(f"{side}ApplicationSecurityGroups"))
    if asgs:
        names = [_asg_name(a.get("id", "") if isinstance(a, dict) else str(a)) for a in asgs]
        return ", ".join(f"{n} (ASG)" for n in names)
    many = _list(props.get(f"{side}AddressPrefixes"))
    if many:
        return ", ".join(str(p) for p in many)
    return str(props.get(f"{side}AddressPrefix", "*"))


def _asg_name(asg_id: str) -> str:
    try:
        return parse(asg_id).name
    except InvalidArmId:
        return asg_id


def rule_row(rule: Any, change: str) -> dict[str, Any]:
    """One ARM securityRule as a flat, readable row."""
    if not isinstance(rule, dict):
        return {"change": change, "name": str(rule)}
    raw = rule.get("properties")
    props: dict[str, Any] = raw if isinstance(raw, dict) else {}
    ports = _list(props.get("destinationPortRanges")) or [props.get("destinationPortRange", "*")]
    return {
        "change": change, "name": str(rule.get("name", "")),
        "priority": props.get("priority"), "direction": str(props.get("direction", "")),
        "access": str(props.get("access", "")), "protocol": str(props.get("protocol", "")),
        "source": _side(props, "source"), "destination": _side(props, "destination"),
        "ports": ", ".join(str(p) for p in ports), "description": str(props.get("description",
                                                                              "")),
    }


def _nsg(entry: Mapping[str, Any]) -> dict[str, Any]:
    nsg_id = str(entry.get("id", ""))
    try:
        parsed = parse(nsg_id)
        name, group, sub = parsed.name, parsed.resource_group or "", parsed.subscription_id
    except InvalidArmId:
        name, group, sub = nsg_id, "", ""
    rules = ([rule_row(r, "add") for r in _list(entry.get("add"))]
             + [rule_row(r, "change") for r in _list(entry.get("change"))]
             + [{"change": "remove", "name": str(n)} for n in _list(entry.get("remove"))])
    return {
        "id": nsg_id, "name": name, "resourceGroup": group, "subscription": sub,
        "portal": portal_url(nsg_id), "rules": rules,
        "add": len(_list(entry.get("add"))), "change": len(_list(entry.get("change"))),
        "remove": len(_list(entry.get("remove"))), "desired": len(_list(entry.get("desired"))),
        "errors": [str(e) for e in _list(entry.get("errors"))],
        "warnings": [str(w) for w in _list(entry.get("warnings"))],
    }


def _issue(item: Any) -> dict[str, str]:
    if isinstance(item, dict):
        return {"message": str(item.get("message", "")), "nsg": str(item.get("nsg", "")),
                "rule": str(item.get("rule", ""))}
    return {"message": str(item), "nsg": "", "rule": ""}


def plan_view(plan: Mapping[str, Any], *, source: str, plan_id: str = "",
              created_at: str = "", subscriptions: Mapping[str, str] | None = None,
              ) -> dict[str, Any]:
    """The plan section's data. ``subscriptions`` maps subscription ids to display names."""
    names = {k.lower(): v for k, v in (subscriptions or {}).items()}
    nsgs = sorted((_nsg(n) for n in _list(plan.get("nsgs")) if isinstance(n, dict)),
                  key=lambda n: (n["subscription"].lower(), n["resourceGroup"].lower(),
                                 n["name"].lower(), n["id"]))
    for nsg in nsgs:
        nsg["subscriptionName"] = names.get(nsg["subscription"].lower(), nsg["subscription"])
    listed = {n["id"].lower() for n in nsgs}

    def general(items: Sequence[Any]) -> list[dict[str, str]]:
        """Issues not already shown on a listed NSG's card."""
        return [_issue(i) for i in items
                if not (isinstance(i, dict) and str(i.get("nsg", "")).lower() in listed)]

    return {
        "source": source, "id": plan_id, "createdAt": created_at, "nsgs": nsgs,
        "warnings": general(_list(plan.get("warnings"))),
        "errors": general(_list(plan.get("errors"))),
        "totals": {k: sum(n[k] for n in nsgs) for k in ("add", "change", "remove")},
    }
