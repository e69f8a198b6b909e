"""What an alert shows about where a finding is (resource, VM, subnet, subscription), its
evidence as rows, and the only links zts puts in alerts: Azure portal links built from validated
ARM ids. Values are returned raw; the renderers escape them for their output."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from shared.domain import arm_id

__all__ = ["PORTAL", "evidence_rows", "links", "portal_url", "value_text", "where_facts"]

PORTAL: Final = "https://portal.azure.com/#@/resource"
LIST_ITEMS_SHOWN: Final = 10
_GUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12}")
_ID_CHARS: Final = re.compile(r"[A-Za-z0-9/._()\-~!*',;=:@+$ ]{1,1024}")
_VM_KEYS: Final = ("vm", "vmname", "virtualmachine", "srcvm", "vmid")
_SUBNET_KEYS: Final = ("subnet", "subnetid", "srcsubnet")
_SUBSCRIPTION_KEYS: Final = ("subscription", "subscriptionid", "srcsubscription")


def portal_url(resource_id: str) -> str | None:
    """``https://portal.azure.com/#@/resource/subscriptions/...`` for a well-formed ARM id (None
    otherwise). The id is percent-encoded, so no value can add a scheme, host or fragment."""
    if not isinstance(resource_id, str) or not _ID_CHARS.fullmatch(resource_id):
        return None
    try:
        parsed = arm_id.parse(resource_id)
    except arm_id.InvalidArmId:
        return None
    if not _GUID.fullmatch(parsed.subscription_id):
        return None
    return PORTAL + quote(resource_id.strip().rstrip("/"), safe="/-_.()")


def _lookup(evidence: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    lowered = {str(k).lower(): v for k, v in evidence.items()}
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def where_facts(resource_id: str, evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Labelled facts saying where the finding is: resource name and type, VM, subnet, resource
    group, subscription (from the ARM id, completed from well-known evidence keys)."""
    facts: list[tuple[str, str]] = []
    try:
        parsed: arm_id.ArmId | None = arm_id.parse(resource_id)
    except arm_id.InvalidArmId:
        parsed = None
    if parsed is not None:
        kind = parsed.full_type.rsplit("/", 1)[-1]
        facts.append(("Resource", f"{parsed.name} ({kind})"))
    else:
        facts.append(("Resource", resource_id or "(none)"))
    vm = _lookup(evidence, _VM_KEYS)
    if not vm and parsed is not None and parsed.full_type == "microsoft.compute/virtualmachines":
        vm = parsed.name
    if vm:
        facts.append(("VM", vm.rsplit("/", 1)[-1] if vm.startswith("/") else vm))
    subnet = _lookup(evidence, _SUBNET_KEYS)
    if not subnet and parsed is not None and parsed.full_type.endswith("/subnets"):
        subnet = "/".join(parsed.names[-2:])
    if subnet:
        facts.append(("Subnet", subnet))
    if parsed is not None and parsed.resource_group:
        facts.append(("Resource group", parsed.resource_group))
    subscription = parsed.subscription_id if parsed is not None else _lookup(
        evidence, _SUBSCRIPTION_KEYS)
    if subscription:
        facts.append(("Subscription", subscription))
    return facts


def links(resource_id: str, evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(title, url) of the portal links for the resource, the VM when the evidence names one by
    ARM id, and the subscription; only ids that validate become links."""
    out: list[tuple[str, str]] = []
    url = portal_url(resource_id)
    if url:
        out.append(("Open resource in Azure portal", url))
    vm = _lookup(evidence, _VM_KEYS)
    vm_url = portal_url(vm) if vm.startswith("/") else None
    if vm_url and vm_url != url:
        out.append(("Open VM in Azure portal", vm_url))
    try:
        subscription = arm_id.parse(resource_id).subscription_id
    except arm_id.InvalidArmId:
        subscription = ""
    if _GUID.fullmatch(subscription):
        out.append(("Open subscription", f"{PORTAL}/subscriptions/{subscription.lower()}/overview"))
    return out


def value_text(value: Any) -> str:
    """One evidence value as text: lists as a count and their first items, objects as compact
    sorted JSON; deterministic."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        if not items:
            return "(none)"
        shown = ", ".join(value_text(v) if isinstance(v, str | int | float | bool) else
                          json.dumps(v, sort_keys=True, default=str)
                          for v in items[:LIST_ITEMS_SHOWN])
        more = f", … (+{len(items) - LIST_ITEMS_SHOWN} more)" if len(items) > \
            LIST_ITEMS_SHOWN else ""
        return f"{len(items)}: {shown}{more}"
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def evidence_rows(evidence: Mapping[str, Any], max_rows: int) -> tuple[list[tuple[str, str]], int]:
    """(key, value text) rows in key order, at most ``max_rows``, and how many were left out."""
    keys = sorted(evidence, key=str)
    rows = [(str(k), value_text(evidence[k])) for k in keys[:max_rows]]
    return rows, max(0, len(keys) - max_rows)
