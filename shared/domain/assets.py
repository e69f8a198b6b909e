"""Typed, immutable inventory assets.

Each asset keeps the ARM id in its original casing (``id``) and, where it refers to other
resources, the referenced ids as they appeared. Comparisons go through :func:`arm_id.key`.
Collections are tuples so assets are hashable and safe to share between threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network
Tags = tuple[tuple[str, str], ...]
"""Tags as sorted (key, value) pairs: hashable and deterministic."""


class AssetKind(StrEnum):
    """The inventory kinds zts understands (also the JSON count keys)."""

    SUBSCRIPTION = "subscriptions"
    RESOURCE_GROUP = "resource_groups"
    VNET = "vnets"
    SUBNET = "subnets"
    NIC = "nics"
    ASG = "asgs"
    NSG = "nsgs"
    VM = "vms"
    PRIVATE_ENDPOINT = "private_endpoints"
    PUBLIC_IP = "public_ips"


class Direction(StrEnum):
    INBOUND = "Inbound"
    OUTBOUND = "Outbound"


class Access(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


def tags_from(raw: dict[str, str]) -> Tags:
    return tuple(sorted(raw.items()))


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str  # /subscriptions/<guid>
    subscription_id: str
    display_name: str | None
    state: str | None = None
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    id: str
    name: str
    subscription_id: str
    location: str | None
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Peering:
    name: str
    remote_vnet_id: str
    state: str | None
    allow_forwarded_traffic: bool = False
    allow_gateway_transit: bool = False
    use_remote_gateways: bool = False


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    name: str
    vnet_id: str
    subscription_id: str
    address_prefixes: tuple[IpNetwork, ...]
    nsg_id: str | None
    delegations: tuple[str, ...] = ()  # service names, e.g. Microsoft.Sql/managedInstances
    route_table_id: str | None = None


@dataclass(frozen=True, slots=True)
class VNet:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    address_prefixes: tuple[IpNetwork, ...]
    subnet_ids: tuple[str, ...]
    peerings: tuple[Peering, ...] = ()
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class IpConfiguration:
    id: str
    name: str
    private_ip: IpAddress | None
    subnet_id: str | None
    asg_ids: tuple[str, ...] = ()
    primary: bool = False
    public_ip_id: str | None = None


@dataclass(frozen=True, slots=True)
class Nic:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    mac_address: str | None  # normalised: 12 upper-case hex digits, no separators
    nsg_id: str | None
    vm_id: str | None
    private_endpoint_id: str | None
    ip_configurations: tuple[IpConfiguration, ...]
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Asg:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class SecurityRule:
    """One NSG security rule, with singular and plural ARM fields merged into tuples."""

    name: str
    priority: int
    direction: Direction
    access: Access
    protocol: str  # Tcp, Udp, Icmp, Esp, Ah or *
    source_prefixes: tuple[str, ...] = ()
    destination_prefixes: tuple[str, ...] = ()
    source_asg_ids: tuple[str, ...] = ()
    destination_asg_ids: tuple[str, ...] = ()
    source_ports: tuple[str, ...] = ("*",)
    destination_ports: tuple[str, ...] = ("*",)
    description: str = ""
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class Nsg:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    etag: str | None
    rules: tuple[SecurityRule, ...]
    default_rules: tuple[SecurityRule, ...]
    subnet_ids: tuple[str, ...] = ()
    nic_ids: tuple[str, ...] = ()
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Vm:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    nic_ids: tuple[str, ...]
    vm_size: str | None = None
    os_type: str | None = None
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class PrivateEndpoint:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    subnet_id: str | None
    nic_ids: tuple[str, ...]
    target_ids: tuple[str, ...] = ()  # private link service / PaaS resource ids
    group_ids: tuple[str, ...] = ()  # e.g. blob, sqlServer
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class PublicIp:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    ip_address: IpAddress | None
    ip_configuration_id: str | None
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """A resource that could not be loaded: which one, which field, and why."""

    resource_id: str
    type: str
    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.resource_id, "type": self.type, "field": self.field,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Dangling:
    """A reference to a resource the snapshot does not contain (kept, but worth knowing)."""

    resource_id: str
    field: str
    target_id: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What the normalizer saw besides the assets: skips, unknown types, dangling references."""

    skipped: tuple[Skipped, ...] = ()
    unknown_types: tuple[tuple[str, int], ...] = ()
    dangling: tuple[Dangling, ...] = ()
    duplicates: int = 0
    total_rows: int = 0
