"""What the local Traffic-Analytics-style enricher needs to know, as plain rows.

The enricher itself runs in DuckDB (shared/adapters/duckdb_engine.py) because it touches every
flow tuple; this module prepares the small lookup tables it joins against, from the inventory,
the raw snapshot rows, the Azure service-tags document and the configuration:

* hosts: private IP -> NIC, VM, subnet, VNet, subscription, region (NTANetAnalytics formats:
  ``rg/nic``, ``rg/vm``, ``rg/vnet/subnet``);
* VNet address spaces (an address is private when RFC 1918 / RFC 6598 or inside one);
* service ranges from the service-tags JSON (``AzurePublic`` and the owning service);
* threat ranges (``MaliciousFlow``) and country overrides (before the offline database);
* NSG ``resourceGuid`` -> ``<subscription>/<rg>/<nsg>``, because flow records name the NSG
  only by the GUID (``aclID``), and the inventory does not keep it.

Addresses are handled as integers (IPv4 only: the flow-log fast path is IPv4; see the docs).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network, summarize_address_range
from typing import Any, Final, NamedTuple

from shared.analytics.config import AnalyticsConfig
from shared.domain.arm_id import InvalidArmId, key, parse
from shared.domain.inventory import Inventory

NSG_TYPE: Final = "microsoft.network/networksecuritygroups"
AZURE_HOST_VIP: Final = "168.63.129.16"
#: RFC 1918 and RFC 6598 (carrier-grade NAT) space: private even outside every known VNet.
PRIVATE_NETWORKS: Final = tuple(
    ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
#: Common destination ports -> the L7Protocol name Traffic Analytics shows.
L7_PROTOCOLS: Final = {
    20: "ftp", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http",
    88: "kerberos", 123: "ntp", 135: "msrpc", 137: "netbios", 139: "netbios", 389: "ldap",
    443: "https", 445: "smb", 636: "ldaps", 1433: "mssql", 1521: "oracle", 2181: "zookeeper",
    3306: "mysql", 3389: "rdp", 5432: "postgresql", 5671: "amqps", 5985: "winrm",
    5986: "winrm", 6379: "redis", 8080: "http", 8443: "https", 9092: "kafka", 27017: "mongodb",
}  # fmt: skip


def ip_int(text: str) -> int:
    """Dotted IPv4 -> integer (raises ValueError for anything else)."""
    if text.count(".") != 3:
        raise ValueError(f"not a dotted IPv4 address: {text!r}")
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except OSError as err:
        raise ValueError(f"not a dotted IPv4 address: {text!r}") from err


def bounds(network: IPv4Network) -> tuple[int, int]:
    return int(network.network_address), int(network.broadcast_address)


class HostRow(NamedTuple):
    """One private IP of the estate, in NTANetAnalytics formats."""

    ip: str
    nic: str  # rg/nic
    vm: str  # rg/vm, "" when the NIC has no VM
    subnet: str  # rg/vnet/subnet
    vnet_id: str  # lower-case ARM id ("" when unknown)
    subscription: str  # lower-case GUID
    region: str


class VnetRange(NamedTuple):
    lo: int
    hi: int
    vnet_id: str  # lower-case ARM id
    subscription: str
    region: str
    size: int  # addresses in the prefix: the smallest containing prefix wins


class ServiceRange(NamedTuple):
    """An Azure service-tag prefix. ``rank`` orders overlapping tags (lower wins): specific
    services before the catch-all ``AzureCloud``, regional before global, smaller first."""

    lo: int
    hi: int
    tag: str  # e.g. Storage.WestEurope
    service: str  # e.g. Storage
    region: str  # e.g. westeurope ("" for global tags)
    rank: int


class ThreatRange(NamedTuple):
    lo: int
    hi: int
    threat_type: str
    description: str
    rank: int


class CountryRange(NamedTuple):
    lo: int
    hi: int
    country: str
    rank: int


def _rg_name(arm_id: str) -> tuple[str, str]:
    try:
        parsed = parse(arm_id)
    except InvalidArmId:
        return "", arm_id.rsplit("/", 1)[-1]
    return parsed.resource_group or "", parsed.name


def host_rows(inventory: Inventory) -> tuple[HostRow, ...]:
    """Every IPv4 NIC address of the estate, sorted by address then NIC id. Overlapping VNets
    may give one address several rows; the enricher then keeps the first (documented gap)."""
    rows = []
    for where in inventory.ip_locations():
        if where.ip.version != 4:
            continue
        nic_rg, nic_name = _rg_name(where.nic.id)
        vm = inventory.vm_of(where.nic)
        vm_text = "/".join(_rg_name(vm.id)) if vm is not None else (
            "/".join(_rg_name(where.nic.vm_id)) if where.nic.vm_id else "")
        subnet = ""
        if where.subnet is not None and where.vnet is not None:
            subnet = f"{where.vnet.resource_group}/{where.vnet.name}/{where.subnet.name}"
        rows.append(HostRow(
            ip=str(where.ip),
            nic=f"{nic_rg}/{nic_name}",
            vm=vm_text,
            subnet=subnet,
            vnet_id=key(where.vnet.id) if where.vnet is not None else "",
            subscription=where.subscription_id.lower(),
            region=(where.vnet.location if where.vnet is not None else where.nic.location) or "",
        ))
    rows.sort(key=lambda r: (ip_int(r.ip), r.nic))
    return tuple(rows)


def vnet_ranges(inventory: Inventory) -> tuple[VnetRange, ...]:
    out = []
    for vnet in inventory.vnets.values():
        for prefix in vnet.address_prefixes:
            if isinstance(prefix, IPv4Network):
                lo, hi = bounds(prefix)
                out.append(VnetRange(lo, hi, key(vnet.id), vnet.subscription_id.lower(),
                                     vnet.location or "", hi - lo + 1))
    return tuple(sorted(out))


def acl_groups(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """NSG ``resourceGuid`` (lower case) -> ``<subscription>/<rg>/<nsg>`` from raw ARM rows."""
    out: dict[str, str] = {}
    for row in rows:
        if str(row.get("type", "")).lower() != NSG_TYPE:
            continue
        props = row.get("properties")
        guid = props.get("resourceGuid") if isinstance(props, Mapping) else None
        arm_id = row.get("id")
        if not isinstance(guid, str) or not isinstance(arm_id, str):
            continue
        try:
            parsed = parse(arm_id)
        except InvalidArmId:
            continue
        out[guid.lower()] = f"{parsed.subscription_id}/{parsed.resource_group}/{parsed.name}"
    return out


@dataclass(frozen=True, slots=True)
class ServiceTags:
    ranges: tuple[ServiceRange, ...]
    skipped_ipv6: int = 0
    problems: tuple[str, ...] = ()


def parse_service_tags(document: Any) -> ServiceTags:
    """The Azure service-tags download format: ``{"values": [{"name": "Storage.WestEurope",
    "properties": {"region": "westeurope", "addressPrefixes": [...]}}]}``. The host VIP
    168.63.129.16 is always added (it is in no tag; Traffic Analytics reports it as
    ``Microsoft Virtual Public IP`` in region ``Global``)."""
    problems: list[str] = []
    values = document.get("values") if isinstance(document, Mapping) else None
    if not isinstance(values, list):
        return ServiceTags(_builtin_ranges(), 0, ('expected {"values": [...]}',))
    ranges: list[ServiceRange] = []
    ipv6 = 0
    for index, value in enumerate(values):
        name = value.get("name") if isinstance(value, Mapping) else None
        props = value.get("properties") if isinstance(value, Mapping) else None
        if not isinstance(name, str) or not isinstance(props, Mapping):
            problems.append(f"values[{index}]: expected name and properties")
            continue
        service = name.partition(".")[0]
        region = str(props.get("region") or "")
        for prefix in props.get("addressPrefixes") or []:
            try:
                network = ip_network(str(prefix), strict=False)
            except ValueError:
                problems.append(f"{name}: bad prefix {prefix!r}")
                continue
            if not isinstance(network, IPv4Network):
                ipv6 += 1
                continue
            ranges.append(ServiceRange(*bounds(network), name, service, region, 0))
    ordered = sorted(ranges, key=_service_order)
    ranked = sorted(r._replace(rank=i + 1) for i, r in enumerate(ordered))
    return ServiceTags(tuple(ranked) + _builtin_ranges(), ipv6, tuple(problems))


def tag_networks(tags: ServiceTags | None) -> dict[str, list[IPv4Network]]:
    """Service tag name -> its IPv4 prefixes, as the NSG evaluator takes them (so ``zts
    simulate`` and policy reach judge rules naming service tags like Azure would)."""
    out: dict[str, list[IPv4Network]] = {}
    for r in tags.ranges if tags is not None else ():
        if r.tag == "AzureHostVip":
            continue
        out.setdefault(r.tag, []).extend(
            summarize_address_range(IPv4Address(r.lo), IPv4Address(r.hi)))
    return out


def _service_order(r: ServiceRange) -> tuple[int, int, int, str]:
    return (int(r.service.lower() == "azurecloud"), int(not r.region), r.hi - r.lo, r.tag)


def _builtin_ranges() -> tuple[ServiceRange, ...]:
    lo = ip_int(AZURE_HOST_VIP)
    return (ServiceRange(lo, lo, "AzureHostVip", "Microsoft Virtual Public IP", "Global", 0),)


def threat_ranges(config: AnalyticsConfig) -> tuple[ThreatRange, ...]:
    """Configured threats; the most specific entry (smallest range, then first listed) wins."""
    ordered = sorted(enumerate(config.threats),
                     key=lambda item: (item[1].network.num_addresses, item[0]))
    return tuple(ThreatRange(*bounds(entry.network), entry.threat_type, entry.description, rank)
                 for rank, (_, entry) in enumerate(ordered))


def country_ranges(config: AnalyticsConfig) -> tuple[CountryRange, ...]:
    ordered = sorted(config.country_overrides, key=lambda item: item[0].num_addresses)
    return tuple(CountryRange(*bounds(network), country, rank)
                 for rank, (network, country) in enumerate(ordered))


def private_ranges() -> tuple[tuple[int, int], ...]:
    return tuple(bounds(n) for n in PRIVATE_NETWORKS if isinstance(n, IPv4Network))


@dataclass(frozen=True, slots=True)
class EnrichmentTables:
    """Everything the enricher joins against (built once per run)."""

    hosts: tuple[HostRow, ...]
    vnets: tuple[VnetRange, ...]
    services: tuple[ServiceRange, ...]
    threats: tuple[ThreatRange, ...]
    countries: tuple[CountryRange, ...]
    acl_groups: Mapping[str, str]
    interval_minutes: int = 10

    @classmethod
    def build(cls, inventory: Inventory, raw_rows: Sequence[Mapping[str, Any]],
              config: AnalyticsConfig, service_tags: ServiceTags | None) -> EnrichmentTables:
        return cls(
            hosts=host_rows(inventory),
            vnets=vnet_ranges(inventory),
            services=(service_tags or ServiceTags(_builtin_ranges())).ranges,
            threats=threat_ranges(config),
            countries=country_ranges(config),
            acl_groups=acl_groups(raw_rows),
            interval_minutes=config.interval_minutes,
        )


def strip_rule_prefix(rule: str) -> tuple[str, str]:
    """``UserRule_X`` -> (``X``, ``User Defined``); ``DefaultRule_X`` -> (``X``, ``Default``).
    Names without a prefix are user rules (whether VNet flow logs prefix them is unconfirmed)."""
    if rule.startswith("DefaultRule_"):
        return rule[len("DefaultRule_"):], "Default"
    if rule.startswith("UserRule_"):
        return rule[len("UserRule_"):], "User Defined"
    return rule, "User Defined"
