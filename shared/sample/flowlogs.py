"""Sample VNet flow log blobs, written exactly as Network Watcher stores them.

:func:`generate_flow_logs` reads NICs, IPs, MACs, VNets, peerings, NSGs and ASG memberships from
raw ARM rows (see :mod:`shared.sample.estate`) and writes ``PT1H.json`` blobs in the documented
layout (reference/azure-formats.md section 2): container ``insights-logs-flowlogflowevent``, one
blob per hour per NIC MAC, one record per minute per NIC, version-4 tuples
``epoch_ms,src,dst,sport,dport,proto,I|O,B|C|E|D,NX,pkts,bytes,pkts,bytes``.

The traffic is of two kinds:

* **Benign** flows drawn from traffic patterns over tags and roles (web to app tier, app to SAP
  and databases, HDInsight cluster chatter, DNS to the hub, Azure services, portal users,
  jump-host administration, private endpoints).
* **Planted incidents** with exact, documented parameters, returned in the manifest so that
  detection tests can assert they find exactly these: an inbound connection from a risky
  country, denied internet scans, a cross-subscription connection, a lateral-movement chain
  and a C2 beacon to a known-bad address.

Every flow is judged by the NSGs of the estate (subnet NSG and NIC NSG, first match by priority,
the six default rules, ASGs and the ``VirtualNetwork``/``Internet``/``AzureLoadBalancer`` and
service tags), so the rule names and the allowed/denied states in the blobs follow from the
estate rather than from a script. A flow between two NICs of the estate is logged at both ends
(``O`` at the source, ``I`` at the destination, same timestamp and ports).

Public addresses come from the RFC 5737 documentation ranges and are listed, with the country
and role each is meant to have, in :data:`PUBLIC_ENDPOINTS`; the enrichment configuration
(country database, threat list, service tags) is expected to be built from that table.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import json
import random
import socket
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, NamedTuple

from shared.sample.estate import (
    NIC_TYPE,
    NSG_TYPE,
    PUBLIC_IP_TYPE,
    SAMPLE_NAMESPACE,
    VM_TYPE,
    VNET_TYPE,
)

CONTAINER: Final = "insights-logs-flowlogflowevent"
FLOW_LOG_VERSION: Final = 4
CATEGORY: Final = "FlowLogFlowEvent"
DEFAULT_RULE_PREFIX: Final = "DefaultRule_"
#: Prefix of user rule names in flow records. NSG flow logs use it; for VNet flow logs it is
#: UNCONFIRMED (azure-formats.md 2.2), so readers should accept names with and without it.
USER_RULE_PREFIX: Final = "UserRule_"
#: aclID and rule written for a NIC no NSG applies to (the format's documented placeholder).
NO_ACL: Final = "unspecified"
TCP: Final = 6
UDP: Final = 17
ICMP: Final = 1
AZURE_LOAD_BALANCER_IP: Final = "168.63.129.16"

_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_CONTINUE_EVERY_MS: Final = 300_000  # C tuples: statistics every five minutes
_PROTOCOLS: Final = {"tcp": (TCP,), "udp": (UDP,), "icmp": (ICMP,), "esp": (50,), "ah": (51,)}
_NON_INTERNET: Final = tuple(
    (int(n.network_address), int(n.broadcast_address))
    for n in map(
        ipaddress.IPv4Network,
        ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
         "127.0.0.0/8", "168.63.129.16/32"),
    )
)  # fmt: skip


class EndpointRole(StrEnum):
    """What a public address stands for in the sample traffic."""

    AZURE_SERVICE = "azure_service"
    CLIENT = "client"
    PARTNER = "partner"
    RISKY = "risky"
    MALICIOUS = "malicious"
    SCANNER = "scanner"


@dataclass(frozen=True)
class PublicEndpoint:
    """A public (documentation-range) address and what enrichment should say about it.

    ``country`` is the ISO 3166-1 alpha-2 code the offline country database is meant to return;
    ``service_tag`` is set for addresses that stand in for an Azure service tag range;
    ``threat`` is set for addresses that belong on the malicious-IP list.
    """

    ip: str
    country: str
    role: EndpointRole
    service_tag: str | None = None
    threat: str | None = None
    note: str = ""


PUBLIC_ENDPOINTS: Final = (
    PublicEndpoint("192.0.2.200", "NL", EndpointRole.AZURE_SERVICE, "Storage.WestEurope",
                   note="stands in for an Azure Storage (blob) front end in West Europe"),
    PublicEndpoint("192.0.2.201", "NL", EndpointRole.AZURE_SERVICE, "AzureMonitor",
                   note="stands in for the Azure Monitor ingestion endpoint"),
    PublicEndpoint("198.51.100.77", "US", EndpointRole.CLIENT, note="payroll portal user"),
    PublicEndpoint("198.51.100.78", "DE", EndpointRole.CLIENT, note="payroll portal user"),
    PublicEndpoint("198.51.100.79", "GB", EndpointRole.CLIENT, note="payroll portal user"),
    PublicEndpoint("198.51.100.120", "US", EndpointRole.PARTNER,
                   note="tax-filing partner API called by the logic tier"),
    PublicEndpoint("198.51.100.23", "KP", EndpointRole.RISKY,
                   note="geolocates to a country on the risky list (planted incident)"),
    PublicEndpoint("203.0.113.66", "NL", EndpointRole.MALICIOUS, threat="C2",
                   note="command-and-control server on the threat list (planted incident)"),
    PublicEndpoint("203.0.113.14", "US", EndpointRole.SCANNER,
                   note="internet SSH scanner, not on the threat list (planted incident)"),
    PublicEndpoint("203.0.113.15", "BR", EndpointRole.SCANNER,
                   note="internet RDP scanner, not on the threat list (planted incident)"),
)  # fmt: skip
#: The risky-country list the sample is written for: only the RISKY endpoint's country is on it.
SUGGESTED_RISKY_COUNTRIES: Final = ("KP",)


class IncidentKind(StrEnum):
    """The kinds of planted incidents (one per Traffic Analytics scenario, plus denied scans)."""

    RISKY_COUNTRY_INBOUND = "risky_country_inbound"
    DENIED_SCAN = "denied_scan"
    CROSS_SUBSCRIPTION = "cross_subscription"
    LATERAL_MOVEMENT = "lateral_movement"
    MALICIOUS_IP = "malicious_ip"


@dataclass(frozen=True)
class PlantedIncident:
    """One planted flow: the first tuple's parameters plus kind-specific facts in ``extra``."""

    kind: IncidentKind
    src_ip: str
    dst_ip: str
    dst_port: int
    protocol: int
    time: datetime
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (time as ISO-8601 with milliseconds)."""
        return {
            "kind": str(self.kind),
            "src_ip": self.src_ip,
            "dst_ip": self.dst_ip,
            "dst_port": self.dst_port,
            "protocol": self.protocol,
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class FlowLogManifest:
    """What :func:`generate_flow_logs` wrote: files, counts and the planted incidents."""

    out_dir: Path
    start: datetime
    end: datetime
    files: tuple[str, ...]  # paths relative to out_dir, starting with the container name
    record_count: int
    tuple_count: int
    tuples_by_state: Mapping[str, int]
    benign_flow_count: int
    benign_flows_by_pattern: Mapping[str, int]
    incidents: tuple[PlantedIncident, ...]
    container: str = CONTAINER

    def paths(self) -> list[Path]:
        """Absolute paths of the blobs written."""
        return [self.out_dir / name for name in self.files]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the manifest."""
        return {
            "container": self.container,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "files": list(self.files),
            "record_count": self.record_count,
            "tuple_count": self.tuple_count,
            "tuples_by_state": dict(self.tuples_by_state),
            "benign_flow_count": self.benign_flow_count,
            "benign_flows_by_pattern": dict(self.benign_flows_by_pattern),
            "incidents": [incident.to_dict() for incident in self.incidents],
        }


# =============================================================================================
# The estate, as the generator needs it
# =============================================================================================


def _ip_int(text: str) -> int:
    """IPv4 text to integer (``inet_aton`` is many times faster than ipaddress)."""
    if text.count(".") != 3:
        raise ValueError(f"not a dotted IPv4 address: {text!r}")
    return int.from_bytes(socket.inet_aton(text), "big")


def _ranges(prefixes: Iterable[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for prefix in prefixes:
        net = ipaddress.IPv4Network(prefix, strict=False)
        out.append((int(net.network_address), int(net.broadcast_address)))
    return tuple(out)


def _ref(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    ref = value.get("id") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and ref else None


@dataclass(slots=True)
class _VNet:
    """A VNet with its address space, Connected peers and VirtualNetwork tag as integers."""

    id: str
    key: str  # lower-case id
    name: str
    resource_group: str
    subscription_id: str
    location: str
    prefixes: tuple[tuple[int, int], ...]
    peers: frozenset[str]  # lower-case ids of Connected peers
    tag_ranges: tuple[tuple[int, int], ...] = ()  # the VirtualNetwork service tag as seen here


@dataclass(slots=True)
class _Side:
    """One side (source or destination) of a compiled NSG rule."""

    any: bool
    ranges: tuple[tuple[int, int], ...]
    asgs: frozenset[str]
    tags: tuple[str, ...]


@dataclass(slots=True)
class _Rule:
    """A compiled security rule; ``log_name`` is the name flow records carry."""

    log_name: str
    allow: bool
    protocols: frozenset[int] | None  # None: any
    ports: tuple[tuple[int, int], ...] | None  # None: any
    src: _Side
    dst: _Side


@dataclass(slots=True)
class _Nsg:
    """An NSG's rules by direction in priority order; ``acl_id`` is its resourceGuid."""

    acl_id: str
    inbound: tuple[_Rule, ...]
    outbound: tuple[_Rule, ...]
    resolved: dict[tuple[str, bool], tuple[_ResolvedRule, ...]] = field(default_factory=dict)


class _Point(NamedTuple):
    """One end of a flow: an address and, for NICs of the estate, their ASGs."""

    ip: str
    ip_int: int
    asgs: frozenset[str] = frozenset()
    nic: _Nic | None = None


@dataclass(slots=True)
class _Nic:
    """What traffic generation needs to know about one NIC (its primary IP configuration)."""

    index: int
    id: str
    name: str
    mac: str | None  # 12 upper-case hex digits; None for private-endpoint NICs
    ip: str
    ip_int: int
    vnet: _VNet
    subscription_id: str
    asgs: frozenset[str]
    nsgs_inbound: tuple[_Nsg, ...]  # subnet NSG, then NIC NSG
    tags: Mapping[str, str]
    os: str
    running: bool  # attached to a running VM (or a private endpoint)
    primary: bool
    private_endpoint: bool
    public_ip: str | None
    vm_id: str | None
    point: _Point = field(init=False)

    def __post_init__(self) -> None:
        self.point = _Point(self.ip, self.ip_int, self.asgs, self)

    @property
    def loggable(self) -> bool:
        """Flow logs record traffic at VM NICs, not at private-endpoint NICs."""
        return self.mac is not None and not self.private_endpoint

    @property
    def active(self) -> bool:
        """Whether the NIC can take part in traffic at all."""
        return self.running and (self.primary or self.private_endpoint)

    def tag(self, key: str) -> str:
        return self.tags.get(key, "")


@dataclass
class _Estate:
    """The NICs (sorted by id; ``index`` is the position) and VNets of the raw estate."""

    nics: list[_Nic]
    vnets: dict[str, _VNet]

    def reachable(self, src: _Nic, dst: _Nic) -> bool:
        return dst.vnet is src.vnet or dst.vnet.key in src.vnet.peers


def _compile_side(prefix_key: str, rule: Mapping[str, Any]) -> _Side:
    """One rule side from the singular and plural ARM fields (GET returns both)."""
    single = rule.get(f"{prefix_key}AddressPrefix")
    values = [single] if isinstance(single, str) and single else []
    values += [v for v in rule.get(f"{prefix_key}AddressPrefixes") or [] if isinstance(v, str)]
    asgs = frozenset(
        ref["id"].lower()
        for ref in rule.get(f"{prefix_key}ApplicationSecurityGroups") or []
        if isinstance(ref, dict) and isinstance(ref.get("id"), str)
    )
    cidrs, tags = [], []
    for value in values:
        if value == "*":
            return _Side(True, (), frozenset(), ())
        if value[0].isdigit():
            cidrs.append(value)
        else:
            tags.append(value.lower())
    return _Side(False, _ranges(cidrs), asgs, tuple(tags))


def _compile_ports(rule: Mapping[str, Any]) -> tuple[tuple[int, int], ...] | None:
    single = rule.get("destinationPortRange")
    values = [single] if isinstance(single, str) and single else []
    values += [str(v) for v in rule.get("destinationPortRanges") or []]
    out = []
    for value in values:
        if value == "*":
            return None
        lo, _, hi = value.partition("-")
        out.append((int(lo), int(hi or lo)))
    return tuple(out)


def _compile_rule(raw: Mapping[str, Any], *, default: bool) -> tuple[str, int, _Rule]:
    props = raw.get("properties") or {}
    protocol = str(props.get("protocol", "*")).lower()
    name = str(raw.get("name", ""))
    prefix = DEFAULT_RULE_PREFIX if default else USER_RULE_PREFIX
    rule = _Rule(
        log_name=prefix + name,
        allow=str(props.get("access", "")).lower() == "allow",
        protocols=None if protocol == "*" else frozenset(_PROTOCOLS.get(protocol, ())),
        ports=_compile_ports(props),
        src=_compile_side("source", props),
        dst=_compile_side("destination", props),
    )
    return str(props.get("direction", "")).lower(), int(props.get("priority", 0)), rule


def _compile_nsg(row: Mapping[str, Any]) -> _Nsg:
    props = row.get("properties") or {}
    compiled = [_compile_rule(r, default=False) for r in props.get("securityRules") or []]
    compiled += [_compile_rule(r, default=True) for r in props.get("defaultSecurityRules") or []]
    compiled.sort(key=lambda item: item[1])
    return _Nsg(
        acl_id=str(props.get("resourceGuid") or uuid.uuid5(SAMPLE_NAMESPACE, row["id"].lower())),
        inbound=tuple(rule for direction, _, rule in compiled if direction == "inbound"),
        outbound=tuple(rule for direction, _, rule in compiled if direction == "outbound"),
    )


_SubnetIndex = dict[str, tuple["_VNet", str | None]]  # subnet id (lower) -> VNet, NSG id


def _parse_vnets(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, _VNet], _SubnetIndex]:
    """VNets by lower-case id, and for each subnet (lower-case id) its VNet and NSG id."""
    vnets: dict[str, _VNet] = {}
    subnets: _SubnetIndex = {}
    remote_spaces: dict[str, list[tuple[str, list[str]]]] = {}
    for row in rows:
        props = row.get("properties") or {}
        space = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        peers, spaces = [], []
        for peering in props.get("virtualNetworkPeerings") or []:
            pprops = peering.get("properties") or {}
            remote = _ref(pprops, "remoteVirtualNetwork")
            if remote and str(pprops.get("peeringState", "")).lower() == "connected":
                peers.append(remote.lower())
                remote_space = (pprops.get("remoteAddressSpace") or {}).get("addressPrefixes")
                spaces.append((remote.lower(), list(remote_space or [])))
        vnet = _VNet(
            id=row["id"],
            key=row["id"].lower(),
            name=row["name"],
            resource_group=row["id"].split("/")[4],
            subscription_id=row["id"].split("/")[2],
            location=str(row.get("location", "")),
            prefixes=_ranges(space),
            peers=frozenset(peers),
        )
        vnets[row["id"].lower()] = vnet
        remote_spaces[row["id"].lower()] = spaces
        for subnet in props.get("subnets") or []:
            subnets[str(subnet["id"]).lower()] = (
                vnet,
                _ref(subnet.get("properties"), "networkSecurityGroup"),
            )
    for key, vnet in vnets.items():
        ranges = list(vnet.prefixes)
        for remote, space in remote_spaces[key]:
            ranges += vnets[remote].prefixes if remote in vnets else _ranges(space)
        vnet.tag_ranges = tuple(ranges)
    return vnets, subnets


def _parse_estate(resources: Sequence[Mapping[str, Any]]) -> _Estate:
    """Index the raw rows: NICs with their VNet, NSGs, ASGs, VM facts and public IP."""
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for row in resources:
        by_type.setdefault(str(row.get("type", "")).lower(), []).append(row)
    vnets, subnets = _parse_vnets(by_type.get(VNET_TYPE, []))
    nsgs = {row["id"].lower(): _compile_nsg(row) for row in by_type.get(NSG_TYPE, [])}
    vms = {row["id"].lower(): row for row in by_type.get(VM_TYPE, [])}
    pips = {
        row["id"].lower(): (row.get("properties") or {}).get("ipAddress")
        for row in by_type.get(PUBLIC_IP_TYPE, [])
    }
    nics: list[_Nic] = []
    for row in sorted(by_type.get(NIC_TYPE, []), key=lambda r: str(r["id"]).lower()):
        nic = _parse_nic(row, len(nics), subnets, nsgs, vms, pips)
        if nic is not None:
            nics.append(nic)
    return _Estate(nics=nics, vnets=vnets)


def _parse_nic(
    row: Mapping[str, Any],
    index: int,
    subnets: _SubnetIndex,
    nsgs: Mapping[str, _Nsg],
    vms: Mapping[str, Mapping[str, Any]],
    pips: Mapping[str, Any],
) -> _Nic | None:
    props = row.get("properties") or {}
    configs = props.get("ipConfigurations") or []
    config = next(
        (c.get("properties") or {} for c in configs if (c.get("properties") or {}).get("primary")),
        (configs[0].get("properties") or {}) if configs else {},
    )
    subnet_id, ip = _ref(config, "subnet"), config.get("privateIPAddress")
    if not subnet_id or not ip or subnet_id.lower() not in subnets:
        return None
    vnet, subnet_nsg = subnets[subnet_id.lower()]
    chain = [
        nsgs[key.lower()]
        for key in (subnet_nsg, _ref(props, "networkSecurityGroup"))
        if key and key.lower() in nsgs
    ]
    vm_id = _ref(props, "virtualMachine")
    vm = vms.get(vm_id.lower()) if vm_id else None
    vm_props = (vm or {}).get("properties") or {}
    power = ((vm_props.get("extended") or {}).get("instanceView") or {}).get("powerState") or {}
    is_pe = _ref(props, "privateEndpoint") is not None
    mac = str(props.get("macAddress") or "").replace("-", "").replace(":", "").upper() or None
    pip_id = _ref(config, "publicIPAddress")
    tags = dict((vm or {}).get("tags") or {})
    tags.update(row.get("tags") or {})
    return _Nic(
        index=index,
        id=row["id"],
        name=row["name"],
        mac=mac,
        ip=ip,
        ip_int=_ip_int(ip),
        vnet=vnet,
        subscription_id=row["id"].split("/")[2].lower(),
        asgs=frozenset(str(a["id"]).lower() for a in config.get("applicationSecurityGroups") or []),
        nsgs_inbound=tuple(chain),
        tags=tags,
        os=str(((vm_props.get("storageProfile") or {}).get("osDisk") or {}).get("osType", "")),
        running=is_pe
        or (vm is not None and power.get("code", "PowerState/running") == "PowerState/running"),
        primary=bool(props.get("primary", True)),
        private_endpoint=is_pe,
        public_ip=pips.get(pip_id.lower()) if pip_id else None,
        vm_id=vm_id,
    )


# =============================================================================================
# NSG evaluation
# =============================================================================================

_AZURE_LB: Final = ((_ip_int(AZURE_LOAD_BALANCER_IP),) * 2,)


def _service_tag_ranges(tag: str) -> tuple[tuple[int, int], ...]:
    """Addresses of :data:`PUBLIC_ENDPOINTS` covered by a service tag (``Storage`` covers
    ``Storage.WestEurope``; ``AzureCloud`` covers every Azure service address)."""
    out = []
    for endpoint in PUBLIC_ENDPOINTS:
        service = (endpoint.service_tag or "").lower()
        if service and (tag in ("azurecloud", service) or service.startswith(tag + ".")):
            out.append((_ip_int(endpoint.ip),) * 2)
    return tuple(out)


class _Resolved(NamedTuple):
    """A rule side with its service tags turned into address ranges for one VNet.

    ``internet_except`` is set when the side holds the ``Internet`` tag: it matches every
    address outside those ranges (private space and the VNet's own ``VirtualNetwork`` tag).
    """

    any: bool
    asgs: frozenset[str]
    ranges: tuple[tuple[int, int], ...]
    internet_except: tuple[tuple[int, int], ...] | None


class _ResolvedRule(NamedTuple):
    rule: _Rule
    src: _Resolved
    dst: _Resolved


def _resolve(side: _Side, vnet_tag: tuple[tuple[int, int], ...]) -> _Resolved:
    ranges = list(side.ranges)
    internet = None
    for tag in side.tags:
        if tag == "virtualnetwork":
            ranges += vnet_tag
        elif tag == "internet":
            internet = _NON_INTERNET + vnet_tag
        elif tag == "azureloadbalancer":
            ranges += _AZURE_LB
        else:
            ranges += _service_tag_ranges(tag)
    return _Resolved(side.any, side.asgs, tuple(ranges), internet)


def _resolved_rules(nsg: _Nsg, inbound: bool, vnet: _VNet) -> tuple[_ResolvedRule, ...]:
    """The NSG's rules of one direction as seen from ``vnet`` (cached on the NSG)."""
    key = (vnet.key, inbound)
    rules = nsg.resolved.get(key)
    if rules is None:
        rules = nsg.resolved[key] = tuple(
            _ResolvedRule(r, _resolve(r.src, vnet.tag_ranges), _resolve(r.dst, vnet.tag_ranges))
            for r in (nsg.inbound if inbound else nsg.outbound)
        )
    return rules


def _matches(side: _Resolved, point: _Point) -> bool:
    if side.any or (side.asgs and not side.asgs.isdisjoint(point.asgs)):
        return True
    ip = point.ip_int
    for lo, hi in side.ranges:
        if lo <= ip <= hi:
            return True
    if side.internet_except is None:
        return False
    return not any(lo <= ip <= hi for lo, hi in side.internet_except)


class _Verdict(NamedTuple):
    acl_id: str
    rule: str
    allowed: bool


def _first_match(
    rules: Sequence[_ResolvedRule], src: _Point, dst: _Point, port: int, proto: int
) -> _Rule | None:
    for resolved in rules:
        rule = resolved.rule
        if rule.protocols is not None and proto not in rule.protocols:
            continue
        if rule.ports is not None and not any(lo <= port <= hi for lo, hi in rule.ports):
            continue
        if _matches(resolved.src, src) and _matches(resolved.dst, dst):
            return rule
    return None


def _evaluate(
    nic: _Nic, inbound: bool, src: _Point, dst: _Point, port: int, proto: int
) -> _Verdict:
    """Azure's NSG processing at ``nic``: subnet then NIC NSG inbound, the reverse outbound.

    A flow passes only if every NSG allows it. A denied flow is logged under the NSG and rule
    that denied it; an allowed one under the last NSG evaluated.
    """
    chain = nic.nsgs_inbound if inbound else nic.nsgs_inbound[::-1]
    verdict = _Verdict(NO_ACL, NO_ACL, True)
    for nsg in chain:
        rule = _first_match(_resolved_rules(nsg, inbound, nic.vnet), src, dst, port, proto)
        if rule is None:  # no default rules in the row: Azure would still deny
            return _Verdict(nsg.acl_id, DEFAULT_RULE_PREFIX + "DenyAll", False)
        verdict = _Verdict(nsg.acl_id, rule.log_name, rule.allow)
        if not rule.allow:
            return verdict
    return verdict


class _Judge:
    """Memoises :func:`_evaluate`: benign traffic repeats the same few endpoint pairs a lot."""

    LIMIT: Final = 250_000  # entries kept before the memo starts over, to bound memory

    def __init__(self) -> None:
        self._memo: dict[tuple[int, bool, int, int, int], _Verdict] = {}

    def __call__(
        self, nic: _Nic, inbound: bool, src: _Point, dst: _Point, port: int, proto: int
    ) -> _Verdict:
        other = src if inbound else dst
        other_id = other.nic.index if other.nic is not None else -1 - other.ip_int
        key = (nic.index, inbound, other_id, port, proto)  # nic is the flow's other end
        verdict = self._memo.get(key)
        if verdict is None:
            if len(self._memo) >= self.LIMIT:
                self._memo.clear()
            verdict = self._memo[key] = _evaluate(nic, inbound, src, dst, port, proto)
        return verdict


# =============================================================================================
# Writing tuples and blobs
# =============================================================================================


@dataclass(frozen=True, slots=True)
class _FlowLog:
    """The flow log resource of one VNet and the blob folder it writes to."""

    resource_id: str
    guid: str
    folder: str  # blob folder up to (not including) y=YYYY


def _flow_log(vnet: _VNet) -> _FlowLog:
    """Flow log named as the portal names it (``{vnet}-{rg}-flowlog``) in NetworkWatcherRG."""
    name = f"{vnet.name}-{vnet.resource_group}-flowlog"
    watcher = f"NetworkWatcher_{vnet.location}"
    resource_id = (
        f"/subscriptions/{vnet.subscription_id}/resourceGroups/NetworkWatcherRG/providers/"
        f"Microsoft.Network/networkWatchers/{watcher}/flowLogs/{name}"
    )
    folder = (
        f"{CONTAINER}/flowLogResourceID=/{vnet.subscription_id.upper()}_NETWORKWATCHERRG/"
        f"{watcher.upper()}_{name.upper()}"
    )
    return _FlowLog(
        resource_id.upper(), str(uuid.uuid5(SAMPLE_NAMESPACE, resource_id.lower())), folder
    )


def _record_time(hour_prefix: str, minute_ms: int, mac: str) -> str:
    """Record time: the last tick of the minute, with deterministic sub-millisecond digits.

    It is never earlier than any tuple of the minute, so the record stays in its hour's blob.
    ``hour_prefix`` is the hour as ``YYYY-MM-DDTHH:``.
    """
    minute = minute_ms // _MINUTE_MS % 60
    return (
        f"{hour_prefix}{minute:02d}:59.999{zlib.crc32(f'{mac}{minute_ms}'.encode()) % 10_000:04d}Z"
    )


@functools.cache
def _json_text(text: str) -> str:
    return json.dumps(text)


class _Sink:
    """Collects tuples per hour, NIC and verdict, then writes each hour's blobs and forgets them."""

    def __init__(self, out_dir: Path, start_ms: int) -> None:
        self.out_dir = out_dir
        self.start_ms = start_ms
        self.buckets: dict[int, dict[tuple[int, _Verdict], list[str]]] = {}
        self.states: Counter[str] = Counter()
        self.files: list[str] = []
        self.records = 0
        self.tuples = 0
        self._flow_logs: dict[str, _FlowLog] = {}

    def add(self, nic: _Nic, verdict: _Verdict, text: str, ts: int) -> None:
        """File one tuple (``text`` starts with its 13-digit timestamp ``ts``)."""
        hour = (ts - self.start_ms) // _HOUR_MS
        bucket = self.buckets.get(hour)
        if bucket is None:
            bucket = self.buckets[hour] = {}
        key = (nic.index, verdict)
        tuples = bucket.get(key)
        if tuples is None:
            bucket[key] = [text]
        else:
            tuples.append(text)

    def flush(self, hour: int, nics: Sequence[_Nic]) -> None:
        """Write every blob of ``hour`` (NICs in id order) and drop its tuples from memory."""
        bucket = self.buckets.pop(hour, {})
        by_nic: dict[int, list[tuple[_Verdict, list[str]]]] = {}
        for (index, verdict), tuples in bucket.items():
            by_nic.setdefault(index, []).append((verdict, tuples))
        del bucket
        hour_start = datetime.fromtimestamp((self.start_ms + hour * _HOUR_MS) / 1000, UTC)
        stamp = hour_start.strftime("y=%Y/m=%m/d=%d/h=%H/m=00")
        hour_prefix = hour_start.strftime("%Y-%m-%dT%H:")
        for index in sorted(by_nic):
            nic = nics[index]
            assert nic.mac is not None  # only loggable NICs get tuples
            flow_log = self._flow_logs.get(nic.vnet.key)
            if flow_log is None:
                flow_log = self._flow_logs[nic.vnet.key] = _flow_log(nic.vnet)
            name = f"{flow_log.folder}/{stamp}/macAddress={nic.mac}/PT1H.json"
            records = self._records(nic, flow_log, hour_prefix, by_nic.pop(index))
            path = self.out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('{"records":[\n' + ",\n".join(records) + "\n]}\n", encoding="utf-8")
            self.files.append(name)

    def _records(
        self,
        nic: _Nic,
        flow_log: _FlowLog,
        hour_prefix: str,
        groups: list[tuple[_Verdict, list[str]]],
    ) -> list[str]:
        """One JSON record per minute; flows per ACL, flow groups per rule, tuples in time order."""
        head = json.dumps(
            {
                "flowLogVersion": FLOW_LOG_VERSION,
                "flowLogGUID": flow_log.guid,
                "macAddress": nic.mac,
                "category": CATEGORY,
                "flowLogResourceID": flow_log.resource_id,
                "targetResourceID": nic.vnet.id,
                "operationName": CATEGORY,
            },
            separators=(",", ":"),
        )[1:-1]
        minutes: dict[int, dict[tuple[str, str], list[str]]] = {}
        for verdict, tuples in groups:
            key = (verdict.acl_id, verdict.rule)
            tuples.sort()
            for text in tuples:
                minute = int(text[:13]) // _MINUTE_MS * _MINUTE_MS
                by_group = minutes.get(minute)
                if by_group is None:
                    by_group = minutes[minute] = {}
                by_group.setdefault(key, []).append(text)
        records = []
        for minute in sorted(minutes):
            by_acl: dict[str, list[str]] = {}
            for (acl, rule), tuples in sorted(minutes[minute].items()):
                self.tuples += len(tuples)
                body = '","'.join(tuples)
                by_acl.setdefault(acl, []).append(
                    f'{{"rule":{_json_text(rule)},"flowTuples":["{body}"]}}'
                )
            flows = ",".join(
                f'{{"aclID":{_json_text(acl)},"flowGroups":[{",".join(groups_)}]}}'
                for acl, groups_ in by_acl.items()
            )
            time = _record_time(hour_prefix, minute, nic.mac or "")
            records.append(f'{{"time":"{time}",{head},"flowRecords":{{"flows":[{flows}]}}}}')
        self.records += len(records)
        return records


class _Flow(NamedTuple):
    """One connection: who, where, when, how long and how much in each direction."""

    src: _Point
    dst: _Point
    sport: int
    dport: int
    proto: int
    start_ms: int
    duration_ms: int
    pkts_s2d: int
    bytes_s2d: int
    pkts_d2s: int
    bytes_d2s: int


class _Outcome(NamedTuple):
    """How a flow was logged: the verdicts at each logged end (None where not logged)."""

    source: _Verdict | None
    destination: _Verdict | None

    @property
    def allowed(self) -> bool:
        return all(v.allowed for v in (self.source, self.destination) if v is not None)

    @property
    def deciding(self) -> _Verdict | None:
        """The verdict that decided the flow: the denying one, else the destination's."""
        for verdict in (self.source, self.destination):
            if verdict is not None and not verdict.allowed:
                return verdict
        return self.destination or self.source


def _emit(sink: _Sink, judge: _Judge, flow: _Flow, end_ms: int) -> _Outcome:
    """Judge ``flow`` by the NSGs at both ends and add its tuples at every logged NIC."""
    src_nic, dst_nic = flow.src.nic, flow.dst.nic
    out_v = in_v = None
    if src_nic is not None:
        out_v = judge(src_nic, False, flow.src, flow.dst, flow.dport, flow.proto)
    if dst_nic is not None and dst_nic.loggable and (out_v is None or out_v.allowed):
        in_v = judge(dst_nic, True, flow.src, flow.dst, flow.dport, flow.proto)
    head = f"{flow.src.ip},{flow.dst.ip},{flow.sport},{flow.dport},{flow.proto}"
    start = flow.start_ms
    if out_v is not None and not out_v.allowed:
        assert src_nic is not None
        sink.add(src_nic, out_v, f"{start},{head},O,D,NX,0,0,0,0", start)
        sink.states["D"] += 1
        return _Outcome(out_v, None)
    if in_v is not None and not in_v.allowed:
        assert dst_nic is not None
        sink.add(dst_nic, in_v, f"{start},{head},I,D,NX,0,0,0,0", start)
        sink.states["D"] += 1
        if out_v is not None and src_nic is not None:  # the source saw an unanswered attempt
            end = min(start + 21_000, end_ms)
            sink.add(src_nic, out_v, f"{start},{head},O,B,NX,0,0,0,0", start)
            sink.add(
                src_nic, out_v, f"{end},{head},O,E,NX,{flow.pkts_s2d},{flow.bytes_s2d},0,0", end
            )
            sink.states.update("BE")
        return _Outcome(out_v, in_v)
    ends = [
        (nic, verdict, letter)
        for nic, verdict, letter in ((src_nic, out_v, "O"), (dst_nic, in_v, "I"))
        if nic is not None and verdict is not None
    ]
    for ts, state, tail in _lifecycle(flow, end_ms):
        for nic, verdict, letter in ends:
            sink.add(nic, verdict, f"{ts},{head},{letter},{state},NX,{tail}", ts)
        sink.states[state] += len(ends)
    return _Outcome(out_v, in_v)


def _lifecycle(flow: _Flow, end_ms: int) -> list[tuple[int, str, str]]:
    """B at the start, C every five minutes, E at the end; C and E carry deltas.

    Returns ``(timestamp, state, counters)`` with the four counters already joined by commas.
    """
    start = flow.start_ms
    finish = min(start + flow.duration_ms, end_ms)
    events = [(start, "B", "0,0,0,0")]
    totals = (flow.pkts_s2d, flow.bytes_s2d, flow.pkts_d2s, flow.bytes_d2s)
    sent: tuple[int, ...] = (0, 0, 0, 0)
    span = max(finish - start, 1)
    for mark in range(start + _CONTINUE_EVERY_MS, finish, _CONTINUE_EVERY_MS):
        share = (mark - start) / span
        cumulative = tuple(int(total * share) for total in totals)
        events.append(
            (mark, "C", ",".join(str(c - s) for c, s in zip(cumulative, sent, strict=True)))
        )
        sent = cumulative
    events.append((finish, "E", ",".join(str(t - s) for t, s in zip(totals, sent, strict=True))))
    return events


# =============================================================================================
# Benign traffic patterns
# =============================================================================================

NicFilter = Callable[[_Nic], bool]


def _tag(key: str, *values: str) -> NicFilter:
    return lambda nic: nic.tag(key) in values


def _all(*filters: NicFilter) -> NicFilter:
    return lambda nic: all(f(nic) for f in filters)


def _not(inner: NicFilter) -> NicFilter:
    return lambda nic: not inner(nic)


def _vm(nic: _Nic) -> bool:
    return not nic.private_endpoint


@dataclass(frozen=True)
class _Shape:
    """Size and length of a pattern's flows (log-uniform between the bounds)."""

    seconds: tuple[float, float]
    packets: tuple[int, int]
    bytes_per_packet: tuple[int, int]  # source to destination, destination to source
    reply_ratio: float = 1.0


@dataclass(frozen=True)
class _Pattern:
    """Who talks to whom, on which ports, how often and how much.

    Exactly one of ``dst`` (NICs of the estate) and ``public_dst`` is set, or ``public_src``
    names the role of internet clients talking to ``dst``.
    """

    name: str
    weight: float
    ports: tuple[int, ...]
    proto: int
    shape: _Shape
    src: NicFilter | None = None
    dst: NicFilter | None = None
    same_vnet: bool = False
    public_src: EndpointRole | None = None
    public_dst: str | None = None  # service tag or role value of PUBLIC_ENDPOINTS
    admin: bool = False  # port by destination OS: 3389 Windows, 22 Linux


_WEB = _tag("tier", "web")
_APP = _tag("tier", "app")
_SAP = _all(_tag("app", "sap"), _tag("tier", "app"))

_PATTERNS: Final = (
    _Pattern("web-to-app", 8, (8443, 8443, 443), TCP, _Shape((0.05, 30), (8, 300), (420, 1100)),
             src=_WEB, dst=_all(_APP, _vm), same_vnet=True),
    _Pattern("app-to-sap", 4, (3200, 3300), TCP, _Shape((0.5, 600), (20, 4000), (300, 800)),
             src=_all(_APP, _not(_tag("app", "sap", "hdinsight"))), dst=_SAP),
    _Pattern("app-to-db", 4, (1433,), TCP, _Shape((0.02, 120), (6, 2000), (250, 1300)),
             src=_all(_APP, _not(_tag("app", "hdinsight"))), dst=_all(_tag("tier", "db"), _vm)),
    _Pattern("hdi-worker-to-head", 4, (8020, 8088, 10200), TCP,
             _Shape((0.1, 900), (10, 5000), (300, 600)),
             src=_tag("role", "workernode"), dst=_tag("role", "headnode"), same_vnet=True),
    _Pattern("hdi-head-to-worker", 3, (30010, 8042), TCP,
             _Shape((0.5, 1200), (50, 20000), (900, 200)),
             src=_tag("role", "headnode"), dst=_tag("role", "workernode"), same_vnet=True),
    _Pattern("hdi-to-zookeeper", 1.5, (2181,), TCP, _Shape((1, 1800), (10, 400), (90, 120)),
             src=_tag("role", "headnode", "workernode"), dst=_tag("role", "zookeepernode"),
             same_vnet=True),
    _Pattern("dns", 6, (53,), UDP, _Shape((0.002, 0.2), (1, 2), (70, 160)),
             src=_all(_vm, _not(_tag("role", "dns"))), dst=_tag("role", "dns")),
    _Pattern("azure-storage", 2, (443,), TCP, _Shape((1, 1800), (20, 40000), (700, 1200)),
             src=_APP, public_dst="storage.westeurope"),
    _Pattern("azure-monitor", 1.5, (443,), TCP, _Shape((0.2, 5), (6, 60), (800, 200)),
             src=_vm, public_dst="azuremonitor"),
    _Pattern("partner-api", 0.5, (443,), TCP, _Shape((0.2, 10), (8, 80), (600, 900)),
             src=_all(_APP, _tag("app", "payroll")), public_dst=str(EndpointRole.PARTNER)),
    _Pattern("portal-users", 3, (443,), TCP, _Shape((0.5, 600), (10, 800), (500, 1300)),
             dst=lambda nic: nic.public_ip is not None and nic.tag("tier") == "web",
             public_src=EndpointRole.CLIENT),
    _Pattern("admin", 0.6, (3389, 22), TCP, _Shape((30, 2400), (200, 40000), (150, 900)),
             src=_tag("role", "jumphost"), dst=_all(_vm, _not(_tag("role", "jumphost"))),
             admin=True),
    _Pattern("reporting", 0.8, (10001,), TCP, _Shape((2, 900), (30, 9000), (300, 1400)),
             src=_tag("role", "gateway"), dst=_tag("role", "headnode")),
    _Pattern("private-endpoint", 1, (443,), TCP, _Shape((0.2, 300), (10, 3000), (900, 600)),
             src=_tag("tier", "app", "db"), dst=lambda nic: nic.private_endpoint),
    _Pattern("ping", 0.3, (0,), ICMP, _Shape((0.001, 0.01), (1, 4), (84, 84)),
             src=_tag("role", "jumphost", "monitoring"),
             dst=_all(_vm, _not(_tag("role", "jumphost")))),
)  # fmt: skip


@dataclass
class _Ready:
    """A pattern bound to an estate: eligible sources and, per source VNet, destinations."""

    pattern: _Pattern
    sources: list[_Nic]
    targets: dict[str, list[_Nic]]
    publics: list[PublicEndpoint]


def _public_match(endpoint: PublicEndpoint, wanted: str) -> bool:
    return (endpoint.service_tag or "").lower() == wanted or str(endpoint.role) == wanted


def _bind(pattern: _Pattern, estate: _Estate) -> _Ready | None:
    """Resolve a pattern's selectors against the estate; None when it has no possible flow."""
    active = [nic for nic in estate.nics if nic.active]
    if pattern.public_src is not None:
        served = [nic for nic in active if pattern.dst is not None and pattern.dst(nic)]
        publics = [e for e in PUBLIC_ENDPOINTS if e.role == pattern.public_src]
        return _Ready(pattern, [], {"": served}, publics) if served and publics else None
    sources = [
        nic for nic in active if nic.loggable and pattern.src is not None and pattern.src(nic)
    ]
    if pattern.public_dst is not None:
        publics = [e for e in PUBLIC_ENDPOINTS if _public_match(e, pattern.public_dst)]
        return _Ready(pattern, sources, {}, publics) if sources and publics else None
    dsts = [nic for nic in active if pattern.dst is not None and pattern.dst(nic)]
    by_vnet: dict[str, list[_Nic]] = {}
    for nic in dsts:
        by_vnet.setdefault(nic.vnet.key, []).append(nic)
    targets: dict[str, list[_Nic]] = {}
    for key, vnet in estate.vnets.items():
        keys = [key] if pattern.same_vnet else [key, *sorted(vnet.peers)]
        targets[key] = [nic for k in keys for nic in by_vnet.get(k, [])]
    eligible = [
        nic for nic in sources if any(other is not nic for other in targets.get(nic.vnet.key, []))
    ]
    return _Ready(pattern, eligible, targets, []) if eligible else None


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return lo * (hi / lo) ** rng.random() if lo > 0 and hi > lo else lo


def _ephemeral_port(rng: random.Random, nic: _Nic | None) -> int:
    if nic is not None and nic.os == "Windows":
        return rng.randrange(49152, 65536)
    if nic is not None:
        return rng.randrange(32768, 61000)
    return rng.randrange(1024, 65536)


_PUBLIC_POINTS: Final = {e.ip: _Point(e.ip, _ip_int(e.ip)) for e in PUBLIC_ENDPOINTS}


def _point(nic: _Nic) -> _Point:
    return nic.point


def _public_point(ip: str) -> _Point:
    return _PUBLIC_POINTS.get(ip) or _Point(ip, _ip_int(ip))


def _benign_flow(ready: _Ready, rng: random.Random, start_ms: int) -> _Flow:
    """Draw one flow of a bound pattern."""
    p = ready.pattern
    src_nic: _Nic | None = None
    dst_nic: _Nic | None = None
    if p.public_src is not None:
        src = _public_point(rng.choice(ready.publics).ip)
        dst_nic = rng.choice(ready.targets[""])
        dst = _point(dst_nic)
    else:
        src_nic = rng.choice(ready.sources)
        src = _point(src_nic)
        if p.public_dst is not None:
            dst = _public_point(rng.choice(ready.publics).ip)
        else:
            options = ready.targets[src_nic.vnet.key]
            i = rng.randrange(len(options))
            dst_nic = options[i] if options[i] is not src_nic else options[(i + 1) % len(options)]
            dst = _point(dst_nic)
    if p.admin and dst_nic is not None:
        port = 3389 if dst_nic.os == "Windows" else 22
    else:
        port = rng.choice(p.ports)
    shape = p.shape
    packets = max(1, int(_log_uniform(rng, *shape.packets)))
    replies = max(1, int(packets * shape.reply_ratio)) if p.proto != ICMP else packets
    out_bpp, in_bpp = shape.bytes_per_packet
    return _Flow(
        src=src,
        dst=dst,
        sport=0 if p.proto == ICMP else _ephemeral_port(rng, src_nic),
        dport=port,
        proto=p.proto,
        start_ms=start_ms,
        duration_ms=max(1, int(_log_uniform(rng, *shape.seconds) * 1000)),
        pkts_s2d=packets,
        bytes_s2d=packets * out_bpp + rng.randrange(out_bpp),
        pkts_d2s=replies,
        bytes_d2s=replies * in_bpp + rng.randrange(in_bpp),
    )


# =============================================================================================
# Planted incidents
# =============================================================================================

#: Offsets from the window start (milliseconds) at which the incidents begin.
RISKY_INBOUND_AT_MS: Final = 7 * _MINUTE_MS + 12_345
SSH_SCAN_AT_MS: Final = 15 * _MINUTE_MS
RDP_SCAN_AT_MS: Final = 16 * _MINUTE_MS + 40_000
CROSS_SUBSCRIPTION_AT_MS: Final = 21 * _MINUTE_MS + 30_500
LATERAL_HOPS_AT_MS: Final = (30 * _MINUTE_MS + 5_250, 37 * _MINUTE_MS + 41_125)
BEACONS_AT_MS: Final = tuple(40 * _MINUTE_MS + 2_000 + k * 5 * _MINUTE_MS for k in range(4))
CROSS_SUBSCRIPTION_PORT: Final = 8080
LATERAL_PORTS: Final = (445, 22)


def _endpoint(role: EndpointRole, index: int = 0) -> PublicEndpoint:
    return [e for e in PUBLIC_ENDPOINTS if e.role == role][index]


def _first(nics: Iterable[_Nic], *filters: NicFilter) -> _Nic | None:
    """The first active NIC (by name) passing all filters."""
    candidates = [n for n in nics if n.active and n.loggable and all(f(n) for f in filters)]
    return min(candidates, key=lambda n: (n.name, n.id)) if candidates else None


@dataclass
class _Planter:
    """Plants the incidents into a sink and describes each one."""

    estate: _Estate
    sink: _Sink
    judge: _Judge
    rng: random.Random
    start_ms: int
    end_ms: int
    incidents: list[PlantedIncident] = field(default_factory=list)

    def plant(self, kind: IncidentKind, flow: _Flow, extra: Mapping[str, Any]) -> _Outcome:
        outcome = _emit(self.sink, self.judge, flow, self.end_ms)
        deciding = outcome.deciding
        facts: dict[str, Any] = {
            "src_nic": flow.src.nic.id if flow.src.nic else None,
            "dst_nic": flow.dst.nic.id if flow.dst.nic else None,
            "src_vm": flow.src.nic.vm_id if flow.src.nic else None,
            "dst_vm": flow.dst.nic.vm_id if flow.dst.nic else None,
            "src_port": flow.sport,
            "allowed": outcome.allowed,
            "rule": deciding.rule if deciding else None,
            "acl_id": deciding.acl_id if deciding else None,
            "src_rule": outcome.source.rule if outcome.source else None,
            "dst_rule": outcome.destination.rule if outcome.destination else None,
        }
        facts.update(extra)
        self.incidents.append(
            PlantedIncident(
                kind=kind,
                src_ip=flow.src.ip,
                dst_ip=flow.dst.ip,
                dst_port=flow.dport,
                protocol=flow.proto,
                time=datetime.fromtimestamp(flow.start_ms / 1000, UTC),
                extra=facts,
            )
        )
        return outcome

    def flow(
        self,
        src: _Point,
        dst: _Point,
        port: int,
        at_ms: int,
        seconds: float,
        packets: int,
        proto: int = TCP,
        reply_ratio: float = 1.0,
    ) -> _Flow:
        replies = int(packets * reply_ratio)
        return _Flow(
            src=src,
            dst=dst,
            sport=_ephemeral_port(self.rng, src.nic),
            dport=port,
            proto=proto,
            start_ms=self.start_ms + at_ms,
            duration_ms=int(seconds * 1000),
            pkts_s2d=packets,
            bytes_s2d=packets * 310,
            pkts_d2s=replies,
            bytes_d2s=replies * 1150,
        )

    def run(self) -> None:
        nics = self.estate.nics
        public = _first(nics, lambda n: n.public_ip is not None, _WEB) or _first(
            nics, lambda n: n.public_ip is not None
        )
        if public is not None:
            self.risky_inbound(public)
            self.scans(public)
        chain = self.lateral_chain(public)
        self.cross_subscription()
        beacon_source = chain[-1] if chain else _first(nics, _tag("tier", "db"))
        if beacon_source is not None:
            self.beacon(beacon_source)
        self.incidents.sort(key=lambda i: (i.time, i.kind, i.src_ip, i.dst_ip))

    def risky_inbound(self, target: _Nic) -> None:
        risky = _endpoint(EndpointRole.RISKY)
        flow = self.flow(
            _public_point(risky.ip),
            _point(target),
            443,
            RISKY_INBOUND_AT_MS,
            95.5,
            1800,
            reply_ratio=1.6,
        )
        self.plant(
            IncidentKind.RISKY_COUNTRY_INBOUND,
            flow,
            {
                "country": risky.country,
                "public_ip": target.public_ip,
                "dst_name": target.name,
            },
        )

    def scans(self, target: _Nic) -> None:
        plans = (
            (_endpoint(EndpointRole.SCANNER, 0), 22, SSH_SCAN_AT_MS, 6),
            (_endpoint(EndpointRole.SCANNER, 1), 3389, RDP_SCAN_AT_MS, 4),
        )
        for scanner, port, at_ms, attempts in plans:
            first: _Flow | None = None
            for attempt in range(attempts):
                flow = self.flow(
                    _public_point(scanner.ip), _point(target), port, at_ms + attempt * 2_000, 0.0, 1
                )
                if first is None:
                    first = flow
                else:
                    _emit(self.sink, self.judge, flow, self.end_ms)
            assert first is not None
            self.plant(
                IncidentKind.DENIED_SCAN,
                first,
                {
                    "attempts": attempts,
                    "interval_ms": 2_000,
                    "country": scanner.country,
                    "dst_name": target.name,
                },
            )

    def lateral_chain(self, entry: _Nic | None) -> list[_Nic]:
        """web -> app in the same VNet (SMB), then app -> SAP (or db) elsewhere (SSH)."""
        nics, est = self.estate.nics, self.estate
        a = entry or _first(nics, _WEB)
        if a is None:
            return []
        b = _first(nics, _APP, lambda n: n.vnet is a.vnet and n is not a)
        if b is None:
            return []
        c = _first(nics, _SAP, lambda n: est.reachable(b, n) and n.vnet is not b.vnet) or _first(
            nics, _tag("tier", "db"), lambda n: est.reachable(b, n) and n is not b
        )
        if c is None:
            return []
        chain = [a, b, c]
        ips = [n.ip for n in chain]
        for hop, (src, dst) in enumerate(pairwise(chain), start=1):
            flow = self.flow(
                _point(src),
                _point(dst),
                LATERAL_PORTS[hop - 1],
                LATERAL_HOPS_AT_MS[hop - 1],
                48.0,
                260,
            )
            self.plant(
                IncidentKind.LATERAL_MOVEMENT,
                flow,
                {
                    "chain": "lateral-1",
                    "hop": hop,
                    "hops": len(chain) - 1,
                    "chain_ips": ips,
                    "src_name": src.name,
                    "dst_name": dst.name,
                },
            )
        return chain

    def cross_subscription(self) -> None:
        """An app-tier VM opening a connection to a head node in another subscription."""
        est = self.estate
        sources = sorted(  # plain application VMs first: gateways legitimately cross over
            (n for n in est.nics if n.active and n.loggable and _APP(n)),
            key=lambda n: (bool(n.tag("role")), n.name, n.id),
        )
        heads = [n for n in est.nics if n.active and n.loggable and n.tag("role") == "headnode"]
        for src in sources if heads else []:
            dst = _first(
                n
                for n in heads
                if n.subscription_id != src.subscription_id and est.reachable(src, n)
            )
            if dst is not None:
                flow = self.flow(
                    _point(src),
                    _point(dst),
                    CROSS_SUBSCRIPTION_PORT,
                    CROSS_SUBSCRIPTION_AT_MS,
                    33.0,
                    140,
                )
                self.plant(
                    IncidentKind.CROSS_SUBSCRIPTION,
                    flow,
                    {
                        "src_subscription": src.subscription_id,
                        "dst_subscription": dst.subscription_id,
                        "src_name": src.name,
                        "dst_name": dst.name,
                    },
                )
                return

    def beacon(self, source: _Nic) -> None:
        """Regular short HTTPS check-ins to the C2 address."""
        c2 = _endpoint(EndpointRole.MALICIOUS)
        flows = [
            self.flow(_point(source), _public_point(c2.ip), 443, at, 1.2, 9) for at in BEACONS_AT_MS
        ]
        self.plant(
            IncidentKind.MALICIOUS_IP,
            flows[0],
            {
                "beacons": len(flows),
                "interval_ms": 5 * _MINUTE_MS,
                "threat": c2.threat,
                "src_name": source.name,
            },
        )
        for flow in flows[1:]:
            _emit(self.sink, self.judge, flow, self.end_ms)


# =============================================================================================
# The entry point
# =============================================================================================


def _utc(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    start = start.astimezone(UTC)
    if (start.minute, start.second, start.microsecond) != (0, 0, 0):
        raise ValueError("start must be on the hour: flow log blobs are hourly")
    if not 10**12 <= start.timestamp() * 1000 < 10**13 - 10 * _HOUR_MS * 24 * 366:
        raise ValueError("start must lie between 2001 and 2286 (13-digit epoch milliseconds)")
    return start


def generate_flow_logs(
    resources: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    start: datetime,
    hours: int = 1,
    seed: int = 0,
    benign_flows_per_hour: int = 1500,
    incidents: bool = True,
) -> FlowLogManifest:
    """Write VNet flow log blobs for ``resources`` under ``out_dir/insights-logs-flowlogflowevent``.

    ``start`` (aware, on the hour) and ``hours`` set the window; every flow starts and ends in
    it. Each hour gets ``benign_flows_per_hour`` benign connections drawn from the benign patterns
    with ``random.Random(seed)``; with ``incidents`` the planted incidents (all in the first hour)
    are added from an independent random stream, so they do not move when the benign volume
    changes. Output is byte-identical for identical inputs. Hours are written one after the
    other and dropped from memory once written. ``out_dir`` must not already hold a flow log
    container, so runs are never mixed.
    """
    window_start = _utc(start)
    if hours < 1 or benign_flows_per_hour < 0:
        raise ValueError("hours must be >= 1 and benign_flows_per_hour >= 0")
    container = out_dir / CONTAINER
    if container.exists() and any(container.iterdir()):
        raise FileExistsError(f"{container} already holds flow logs; use an empty directory")
    estate = _parse_estate(resources)
    start_ms = int(window_start.timestamp() * 1000)
    end_ms = start_ms + hours * _HOUR_MS - 1
    sink, judge = _Sink(out_dir, start_ms), _Judge()
    planted: list[PlantedIncident] = []
    if incidents:
        incident_rng = random.Random(f"zts-incidents-{seed}")  # noqa: S311 - sample data
        planter = _Planter(estate, sink, judge, incident_rng, start_ms, end_ms)
        planter.run()
        planted = planter.incidents
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not cryptography
    bound = [r for r in (_bind(p, estate) for p in _PATTERNS) if r is not None]
    per_pattern: Counter[str] = Counter()
    if bound:
        cumulative = list(_cumulative(r.pattern.weight for r in bound))
        for hour in range(hours):
            hour_ms = start_ms + hour * _HOUR_MS
            for _ in range(benign_flows_per_hour):
                ready = bound[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]
                flow = _benign_flow(ready, rng, hour_ms + rng.randrange(_HOUR_MS))
                _emit(sink, judge, flow, end_ms)
                per_pattern[ready.pattern.name] += 1
            sink.flush(hour, estate.nics)
    for hour in sorted(sink.buckets):
        sink.flush(hour, estate.nics)
    return FlowLogManifest(
        out_dir=out_dir,
        start=window_start,
        end=window_start + timedelta(hours=hours),
        files=tuple(sink.files),
        record_count=sink.records,
        tuple_count=sink.tuples,
        tuples_by_state=dict(sorted(sink.states.items())),
        benign_flow_count=sum(per_pattern.values()),
        benign_flows_by_pattern=dict(sorted(per_pattern.items())),
        incidents=tuple(planted),
    )


def _cumulative(weights: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total
