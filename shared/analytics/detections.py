"""Query rows -> findings, one mapper per detection.

The queries return Traffic Analytics vocabulary (``rg/vm``, ``sub/rg/vnet``, subscription
GUIDs); the mappers turn it into :class:`Finding` objects with ARM ids (from the inventory when
the address is known there, else built from the row the way Microsoft's sample queries do),
readable summaries, and the evidence keys the CLI's JSON promises:

* risky_region / malicious_flow: ``public_ip``, ``private_ip``, ``country``, ``direction``
  (+ ``threat_type``);
* cross_subscription: ``src_subscription``, ``dst_subscription``, ``src_ip``, ``dst_ip``,
  ``flows``;
* azure_service: ``vnet``, ``service``, ``flows``;
* blast_radius (shared.analytics.blast_radius): ``origin``, ``reached``.

Each mapper also reports what it could *not* check (a public address without a country is
neither risky nor clean), so the service never turns "unknown" into silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.analytics.config import AnalyticsConfig
from shared.analytics.query import Row
from shared.domain.arm_id import key
from shared.domain.findings import Finding
from shared.domain.inventory import Inventory

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z`` (what the JSON output uses everywhere)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Origin:
    """A host to compute the blast radius from: compromised no later than ``since``."""

    ip: str
    since: datetime
    reasons: tuple[str, ...]


@dataclass
class Mapped:
    """A mapper's output: findings, blast-radius origins it implies, and notes for the stats."""

    findings: list[Finding] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """What mappers may consult besides the rows."""

    config: AnalyticsConfig
    inventory: Inventory | None = None
    default_severity: str = "medium"


# -- helpers --------------------------------------------------------------------------------------


def _text(row: Row, name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value)


def _int(row: Row, name: str) -> int:
    value = row.get(name)
    return int(value) if isinstance(value, int | float) else 0


def _time(row: Row, name: str) -> datetime | None:
    value = row.get(name)
    return value if isinstance(value, datetime) else None


def _list(row: Row, name: str) -> list[Any]:
    value = row.get(name)
    return list(value) if isinstance(value, list | tuple) else []


def _ports(row: Row) -> list[int]:
    return sorted({int(p) for p in _list(row, "Ports") if isinstance(p, int | float)})


def arm_from_path(subscription: str, path: str, provider: str) -> str:
    """``rg/name`` + subscription -> ``/subscriptions/S/resourceGroups/RG/providers/P/name``."""
    parts = [p for p in path.split("/") if p]
    if not subscription or len(parts) < 2:
        return ""
    return f"/subscriptions/{subscription}/resourceGroups/{parts[0]}/providers/{provider}/" + (
        parts[1])


def vnet_id_from_path(path: str) -> str:
    """``sub/rg/vnet`` -> the VNet's ARM id (lower case: it is rebuilt, not observed)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        return ""
    return (f"/subscriptions/{parts[0]}/resourcegroups/{parts[1]}/providers/"
            f"microsoft.network/virtualnetworks/{parts[2]}").lower()


@dataclass(frozen=True, slots=True)
class Host:
    """An address as people know it: VM or NIC name and the ARM id findings are about."""

    ip: str
    name: str
    resource_id: str
    vm_id: str
    nic_id: str
    subscription: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.ip})" if self.name and self.name != self.ip else self.ip


def describe_host(ip: str, inventory: Inventory | None, *, vm: str = "", nic: str = "",
                  subscription: str = "") -> Host:
    """Prefer the inventory (exact ids and casing); fall back to the row's ``rg/vm``."""
    if inventory is not None and ip:
        try:
            found = inventory.locate_ip(ip)
        except ValueError:
            found = ()
        if found:
            where = found[0]
            vm_asset = inventory.vm_of(where.nic)
            vm_id = vm_asset.id if vm_asset is not None else (where.nic.vm_id or "")
            name = vm_asset.name if vm_asset is not None else where.nic.name
            return Host(ip, name, vm_id or where.nic.id, vm_id, where.nic.id,
                        where.subscription_id.lower())
    vm_id = arm_from_path(subscription, vm, "Microsoft.Compute/virtualMachines")
    nic_id = arm_from_path(subscription, nic, "Microsoft.Network/networkInterfaces")
    name = (vm or nic).rsplit("/", 1)[-1] if (vm or nic) else ""
    return Host(ip, name, vm_id or nic_id or ip, vm_id, nic_id, subscription.lower())


def subscription_label(subscription: str, inventory: Inventory | None) -> str:
    if inventory is None:
        return subscription
    name = inventory.subscription_name(subscription)
    return name if name and name != subscription else subscription


# -- risky_region and malicious_flow -------------------------------------------------------------


def _public_peer(row: Row, ctx: Context, detection: str, *, threat: bool) -> Finding:
    public_ip, private_ip = _text(row, "PublicIp"), _text(row, "PrivateIp")
    direction = _text(row, "Direction") or "outbound"
    country = _text(row, "CountryCode")
    allowed, denied = _int(row, "AllowedFlows"), _int(row, "DeniedFlows")
    host = describe_host(private_ip, ctx.inventory, vm=_text(row, "Vm"), nic=_text(row, "Nic"),
                         subscription=_text(row, "Subscription"))
    first = _time(row, "FirstSeen") or EPOCH
    peer = f"{public_ip} ({country})" if country else public_ip
    if threat:
        peer = f"{_text(row, 'ThreatType')} address {peer}"
    else:
        peer = f"risky-country address {peer}"
    if direction == "inbound":
        what = f"inbound from {peer} to {host.label}"
    else:
        what = f"outbound from {host.label} to {peer}"
    verdict = (f"{allowed} allowed" + (f", {denied} denied" if denied else "")
               if allowed else f"{denied} denied")
    ports = _ports(row)
    summary = f"{what}: {verdict} flow(s) on port(s) {', '.join(map(str, ports)) or '-'}"
    evidence: dict[str, Any] = {
        "public_ip": public_ip, "private_ip": private_ip, "country": country,
        "direction": direction,
    }
    if threat:
        evidence["threat_type"] = _text(row, "ThreatType")
        evidence["threat_description"] = _text(row, "Description")
    evidence.update({
        "vm": host.vm_id, "nic": host.nic_id, "allowed_flows": allowed, "denied_flows": denied,
        "ports": ports, "first_seen": iso(first), "last_seen": iso(_time(row, "LastSeen")),
    })
    # every attempt denied: the NSGs held; still worth knowing, at a lower level
    severity = ctx.default_severity if allowed else ("medium" if threat else "low")
    identity = (public_ip, private_ip, direction)
    return Finding(detection, severity, summary, host.resource_id, first, evidence, identity)


def _origin(row: Row, reason: str) -> Origin | None:
    since = _time(row, "FirstAllowed")
    private_ip = _text(row, "PrivateIp")
    if since is None or not private_ip or _int(row, "AllowedFlows") <= 0:
        return None
    return Origin(private_ip, since, (reason,))


def map_risky_region(rows: Sequence[Row], ctx: Context) -> Mapped:
    """Rows with a country on the list become findings; rows without a country are counted as
    unchecked (``public_without_country``)."""
    out = Mapped()
    unchecked = sorted({_text(r, "PublicIp") for r in rows if not _text(r, "CountryCode")})
    for row in rows:
        if not _text(row, "CountryCode"):
            continue
        out.findings.append(_public_peer(row, ctx, "risky_region", threat=False))
        origin = _origin(row, f"met risky-country address {_text(row, 'PublicIp')} "
                              f"({_text(row, 'CountryCode')})")
        if origin is not None:
            out.origins.append(origin)
    out.notes["public_without_country"] = len(unchecked)
    if unchecked:
        out.notes["unchecked_examples"] = unchecked[:10]
    return out


def map_malicious_flow(rows: Sequence[Row], ctx: Context) -> Mapped:
    out = Mapped()
    for row in rows:
        out.findings.append(_public_peer(row, ctx, "malicious_flow", threat=True))
        origin = _origin(row, f"met {_text(row, 'ThreatType')} address {_text(row, 'PublicIp')}")
        if origin is not None:
            out.origins.append(origin)
    return out


# -- azure_service ---------------------------------------------------------------------------------


def _expected_for(vnet_path: str, expected: Mapping[str, tuple[str, ...]]) -> set[str] | None:
    """Services listed for a VNet (by name, ARM id or ``sub/rg/vnet``), None if not listed."""
    parts = vnet_path.split("/")
    name = parts[2].lower() if len(parts) >= 3 else ""
    wanted = {name, vnet_path.lower(), key(vnet_id_from_path(vnet_path))} - {""}
    found: set[str] | None = None
    for listed, services in expected.items():
        if key(listed) in wanted or listed.lower() in wanted:
            found = (found or set()) | {s.lower() for s in services}
    return found


def map_azure_service(rows: Sequence[Row], ctx: Context) -> Mapped:
    """Every (VNet, service) interaction is listed in the notes; those not expected become
    findings. Without ``expected_services`` (learning mode) each is an informational finding."""
    out = Mapped()
    expected = ctx.config.expected_services
    interactions = []
    for row in rows:
        path, service = _text(row, "VnetPath"), _text(row, "Service") or "Unknown"
        flows = _int(row, "Flows")
        vnet_id = vnet_id_from_path(path)
        vnet_name = path.split("/")[2] if path.count("/") >= 2 else path
        if ctx.inventory is not None and key(vnet_id) in ctx.inventory.vnets:
            vnet_id = ctx.inventory.vnets[key(vnet_id)].id
        interactions.append({"vnet": vnet_id or path, "service": service, "flows": flows})
        allowed = None if expected is None else _expected_for(path, expected)
        if allowed is not None and ("*" in allowed or service.lower() in allowed):
            continue
        first = _time(row, "FirstSeen") or EPOCH
        talkers = sorted({str(t) for t in _list(row, "TalkerIps")})
        if expected is None:
            severity = "informational"
            summary = (f"VNet {vnet_name} talks to Azure service {service}: {flows} flow(s) "
                       f"from {len(talkers)} host(s) (no expected_services configured)")
        else:
            severity = ctx.default_severity
            summary = (f"VNet {vnet_name} talks to Azure service {service}, which is not in "
                       f"its expected services: {flows} flow(s) from {len(talkers)} host(s)")
        evidence = {
            "vnet": vnet_id or path, "service": service, "flows": flows,
            "talkers": talkers[:20], "talker_count": _int(row, "Talkers") or len(talkers),
            "expected": sorted(allowed) if allowed is not None else None,
            "first_seen": iso(first), "last_seen": iso(_time(row, "LastSeen")),
        }
        out.findings.append(Finding("azure_service", severity, summary, vnet_id or path, first,
                                    evidence, (service.lower(),)))
    out.notes["interactions"] = sorted(interactions, key=lambda i: (i["vnet"], i["service"]))
    return out


# -- cross_subscription ----------------------------------------------------------------------------


def _rules(row: Row) -> list[dict[str, str]]:
    out = []
    for item in _list(row, "Rules"):
        direction, _, rest = str(item).partition("|")
        nsg, _, rule = rest.rpartition("|")
        out.append({"direction": direction, "nsg": nsg, "rule": rule})
    return sorted(out, key=lambda r: (r["direction"], r["nsg"], r["rule"]))


def map_cross_subscription(rows: Sequence[Row], ctx: Context) -> Mapped:
    out = Mapped()
    inv = ctx.inventory
    for row in rows:
        src_sub, dst_sub = _text(row, "SrcSubscription"), _text(row, "DestSubscription")
        src_ip, dst_ip = _text(row, "SrcIp"), _text(row, "DestIp")
        src = describe_host(src_ip, inv, subscription=src_sub)
        dst = describe_host(dst_ip, inv, subscription=dst_sub)
        flows = _int(row, "Flows")
        ports = _ports(row)
        rules = _rules(row)
        first = _time(row, "FirstSeen") or EPOCH
        allowed_by = "; ".join(f"{r['nsg'].rsplit('/', 1)[-1]}/{r['rule']} ({r['direction']})"
                               for r in rules)
        summary = (f"{src.label} in {subscription_label(src_sub, inv)} -> {dst.label} in "
                   f"{subscription_label(dst_sub, inv)} on port(s) "
                   f"{', '.join(map(str, ports)) or '-'}: {flows} flow(s), allowed by "
                   f"{allowed_by or 'no recorded rule'}")
        evidence = {
            "src_subscription": src_sub, "dst_subscription": dst_sub, "src_ip": src_ip,
            "dst_ip": dst_ip, "flows": flows, "src_vnet": vnet_id_from_path(_text(row, "SrcVnet")),
            "dst_vnet": vnet_id_from_path(_text(row, "DestVnet")), "ports": ports,
            "rules": rules, "flow_type": _text(row, "FlowType"), "first_seen": iso(first),
            "last_seen": iso(_time(row, "LastSeen")),
        }
        out.findings.append(Finding("cross_subscription", ctx.default_severity, summary,
                                    src.resource_id, first, evidence,
                                    (src_ip, dst_ip, src_sub.lower(), dst_sub.lower())))
    return out


MAPPERS = {
    "risky_region": map_risky_region,
    "malicious_flow": map_malicious_flow,
    "azure_service": map_azure_service,
    "cross_subscription": map_cross_subscription,
}


def merge_origins(origins: Iterable[Origin]) -> list[Origin]:
    """One origin per IP: the earliest time, every reason (sorted)."""
    merged: dict[str, Origin] = {}
    for origin in origins:
        known = merged.get(origin.ip)
        if known is None:
            merged[origin.ip] = origin
        else:
            merged[origin.ip] = Origin(origin.ip, min(known.since, origin.since),
                                       tuple(sorted(set(known.reasons) | set(origin.reasons))))
    return [merged[ip] for ip in sorted(merged)]
