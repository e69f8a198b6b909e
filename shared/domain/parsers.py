"""One parser per ARM resource type: raw JSON in, typed assets out.

Parsers are written against the documented ARM REST field names; :class:`RawObject` makes them
accept the flattened shapes too. A parser raises :class:`FieldError` naming the field at fault;
it never guesses a value for a malformed field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shared.domain import arm_id
from shared.domain.assets import (
    Access,
    Asg,
    Direction,
    IpConfiguration,
    Nic,
    Nsg,
    Peering,
    PrivateEndpoint,
    PublicIp,
    ResourceGroup,
    SecurityRule,
    Subnet,
    Subscription,
    Tags,
    Vm,
    VNet,
    tags_from,
)
from shared.domain.raw import FieldError, RawObject

Asset = (
    Subscription | ResourceGroup | VNet | Subnet | Nic | Asg | Nsg | Vm | PrivateEndpoint | PublicIp
)
Parser = Callable[["Common", RawObject], Iterator[Asset]]

PROTOCOLS = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "esp": "Esp", "ah": "Ah", "*": "*"}


@dataclass(frozen=True, slots=True)
class Common:
    """Fields every ARM resource row has (derived from the id when the row omits them)."""

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str | None
    tags: Tags


def common(raw: RawObject, resource_id: str) -> Common:
    parsed = arm_id.parse(resource_id)
    return Common(
        id=resource_id,
        name=raw.text("name") or parsed.name,
        subscription_id=(raw.text("subscriptionId") or parsed.subscription_id).lower(),
        resource_group=raw.text("resourceGroup") or parsed.resource_group or "",
        location=raw.text("location"),
        tags=tags_from(raw.tags()),
    )


def parse_subscription(c: Common, raw: RawObject) -> Iterator[Asset]:
    display = raw.text("displayName")
    if display is None and c.name.lower() != c.subscription_id:
        display = c.name  # Resource Graph ResourceContainers put the display name in `name`
    yield Subscription(
        id=c.id, subscription_id=c.subscription_id, display_name=display,
        state=raw.text("state"), tags=c.tags,
    )


def parse_resource_group(c: Common, raw: RawObject) -> Iterator[Asset]:
    yield ResourceGroup(
        id=c.id, name=c.name, subscription_id=c.subscription_id, location=c.location, tags=c.tags,
    )


def _subnet(raw: RawObject, vnet_id: str, subscription_id: str) -> Subnet:
    subnet_id = raw.required_text("id")
    delegations = tuple(
        d.required_text("serviceName") for d in raw.objects("delegations")
    )
    return Subnet(
        id=subnet_id,
        name=raw.text("name") or arm_id.parse(subnet_id).name,
        vnet_id=vnet_id,
        subscription_id=subscription_id,
        address_prefixes=raw.networks("addressPrefix", "addressPrefixes"),
        nsg_id=raw.ref("networkSecurityGroup"),
        delegations=delegations,
        route_table_id=raw.ref("routeTable"),
    )


def parse_vnet(c: Common, raw: RawObject) -> Iterator[Asset]:
    space = raw.child("addressSpace")
    prefixes = space.networks("addressPrefixes") if space else ()
    subnets = [_subnet(s, c.id, c.subscription_id) for s in raw.objects("subnets")]
    peerings = tuple(
        Peering(
            name=p.text("name") or "",
            remote_vnet_id=_required_ref(p, "remoteVirtualNetwork"),
            state=p.text("peeringState"),
            allow_forwarded_traffic=p.flag("allowForwardedTraffic"),
            allow_gateway_transit=p.flag("allowGatewayTransit"),
            use_remote_gateways=p.flag("useRemoteGateways"),
        )
        for p in raw.objects("virtualNetworkPeerings")
    )
    yield VNet(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, address_prefixes=prefixes,
        subnet_ids=tuple(s.id for s in subnets), peerings=peerings, tags=c.tags,
    )
    yield from subnets


def parse_subnet(c: Common, raw: RawObject) -> Iterator[Asset]:
    yield _subnet(raw, arm_id.parent_id(c.id), c.subscription_id)


def _required_ref(raw: RawObject, name: str) -> str:
    ref = raw.ref(name)
    if ref is None:
        raise FieldError(f"{raw.path}.{name}.id" if raw.path else f"{name}.id", "is required")
    return ref


def _ip_configuration(raw: RawObject) -> IpConfiguration:
    config_id = raw.text("id") or ""
    return IpConfiguration(
        id=config_id,
        name=raw.text("name") or (arm_id.parse(config_id).name if config_id else ""),
        private_ip=raw.address("privateIPAddress"),
        subnet_id=raw.ref("subnet"),
        asg_ids=raw.refs("applicationSecurityGroups"),
        primary=raw.flag("primary"),
        public_ip_id=raw.ref("publicIPAddress"),
    )


def normalize_mac(mac: str) -> str:
    """``00-0D-3A-11-22-33``, ``00:0d:3a:11:22:33`` and ``000D3A112233`` all become the last."""
    digits = mac.replace("-", "").replace(":", "").replace(".", "").upper()
    if len(digits) != 12 or any(ch not in "0123456789ABCDEF" for ch in digits):
        raise FieldError("macAddress", f"is not a MAC address: {mac!r}")
    return digits


def parse_nic(c: Common, raw: RawObject) -> Iterator[Asset]:
    configs = tuple(_ip_configuration(cfg) for cfg in raw.objects("ipConfigurations"))
    if not configs:
        raise FieldError("ipConfigurations", "a NIC needs at least one IP configuration")
    mac = raw.text("macAddress")
    yield Nic(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, mac_address=normalize_mac(mac) if mac else None,
        nsg_id=raw.ref("networkSecurityGroup"), vm_id=raw.ref("virtualMachine"),
        private_endpoint_id=raw.ref("privateEndpoint"), ip_configurations=configs, tags=c.tags,
    )


def parse_asg(c: Common, raw: RawObject) -> Iterator[Asset]:
    yield Asg(
        id=c.id, name=c.name, subscription_id=c.subscription_id,
        resource_group=c.resource_group, location=c.location, tags=c.tags,
    )


def _enum_text(raw: RawObject, name: str, allowed: dict[str, str]) -> str:
    text = raw.required_text(name)
    try:
        return allowed[text.lower()]
    except KeyError:
        where = f"{raw.path}.{name}" if raw.path else name
        choices = sorted(set(allowed.values()))
        raise FieldError(where, f"must be one of {choices}, got {text!r}") from None


def security_rule(raw: RawObject, *, is_default: bool = False) -> SecurityRule:
    """Parse one ARM securityRule (singular and plural address/port fields merged)."""
    priority = raw.integer("priority", required=True)
    assert priority is not None
    return SecurityRule(
        name=raw.required_text("name"),
        priority=priority,
        direction=Direction(_enum_text(raw, "direction", {d.lower(): d for d in Direction})),
        access=Access(_enum_text(raw, "access", {a.lower(): a for a in Access})),
        protocol=_enum_text(raw, "protocol", PROTOCOLS),
        source_prefixes=raw.strings("sourceAddressPrefix") + raw.strings("sourceAddressPrefixes"),
        destination_prefixes=(
            raw.strings("destinationAddressPrefix") + raw.strings("destinationAddressPrefixes")
        ),
        source_asg_ids=raw.refs("sourceApplicationSecurityGroups"),
        destination_asg_ids=raw.refs("destinationApplicationSecurityGroups"),
        source_ports=(raw.strings("sourcePortRange") + raw.strings("sourcePortRanges")) or ("*",),
        destination_ports=(
            raw.strings("destinationPortRange") + raw.strings("destinationPortRanges")
        ) or ("*",),
        description=raw.text("description") or "",
        is_default=is_default,
    )


def parse_nsg(c: Common, raw: RawObject) -> Iterator[Asset]:
    yield Nsg(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, etag=raw.text("etag"),
        rules=tuple(security_rule(r) for r in raw.objects("securityRules")),
        default_rules=tuple(
            security_rule(r, is_default=True) for r in raw.objects("defaultSecurityRules")
        ),
        subnet_ids=raw.refs("subnets"), nic_ids=raw.refs("networkInterfaces"), tags=c.tags,
    )


def parse_vm(c: Common, raw: RawObject) -> Iterator[Asset]:
    network = raw.child("networkProfile")
    hardware = raw.child("hardwareProfile")
    storage = raw.child("storageProfile")
    os_disk = storage.child("osDisk") if storage else None
    yield Vm(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, nic_ids=network.refs("networkInterfaces") if network else (),
        vm_size=hardware.text("vmSize") if hardware else None,
        os_type=os_disk.text("osType") if os_disk else None, tags=c.tags,
    )


def parse_private_endpoint(c: Common, raw: RawObject) -> Iterator[Asset]:
    connections = raw.objects("privateLinkServiceConnections") + raw.objects(
        "manualPrivateLinkServiceConnections"
    )
    yield PrivateEndpoint(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, subnet_id=raw.ref("subnet"), nic_ids=raw.refs("networkInterfaces"),
        target_ids=tuple(conn.required_text("privateLinkServiceId") for conn in connections),
        group_ids=tuple(g for conn in connections for g in conn.strings("groupIds")),
        tags=c.tags,
    )


def parse_public_ip(c: Common, raw: RawObject) -> Iterator[Asset]:
    yield PublicIp(
        id=c.id, name=c.name, subscription_id=c.subscription_id, resource_group=c.resource_group,
        location=c.location, ip_address=raw.address("ipAddress"),
        ip_configuration_id=raw.ref("ipConfiguration"), tags=c.tags,
    )


PARSERS: dict[str, Parser] = {
    "microsoft.resources/subscriptions": parse_subscription,
    "microsoft.resources/subscriptions/resourcegroups": parse_resource_group,
    "microsoft.network/virtualnetworks": parse_vnet,
    "microsoft.network/virtualnetworks/subnets": parse_subnet,
    "microsoft.network/networkinterfaces": parse_nic,
    "microsoft.network/applicationsecuritygroups": parse_asg,
    "microsoft.network/networksecuritygroups": parse_nsg,
    "microsoft.compute/virtualmachines": parse_vm,
    "microsoft.network/privateendpoints": parse_private_endpoint,
    "microsoft.network/publicipaddresses": parse_public_ip,
}
"""The registry of supported types (lower-case ARM type -> parser). Anything else is counted."""
