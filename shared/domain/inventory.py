"""The inventory: every asset by id, plus the lookups the rest of zts asks for.

Lookups are built once, when the inventory is built, so that group resolution and flow
enrichment never scan the estate. All id lookups are case-insensitive (:func:`arm_id.key`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from types import MappingProxyType
from typing import TypeVar

from shared.domain.arm_id import key
from shared.domain.assets import (
    Asg,
    AssetKind,
    IpAddress,
    IpConfiguration,
    LoadReport,
    Nic,
    Nsg,
    PrivateEndpoint,
    PublicIp,
    ResourceGroup,
    Subnet,
    Subscription,
    Vm,
    VNet,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IpLocation:
    """Where a private IP lives: IP configuration -> NIC -> subnet -> VNet -> subscription."""

    ip: IpAddress
    nic: Nic
    ip_configuration: IpConfiguration
    subnet: Subnet | None
    vnet: VNet | None
    subscription_id: str
    member_key: tuple[str, str] = ("", "")  # (NIC id key, IP configuration name, lower-case)


def _by_key(items: Iterable[T], id_of: str = "id") -> Mapping[str, T]:
    return MappingProxyType({key(getattr(item, id_of)): item for item in items})


class Inventory:
    """An immutable, indexed view of one estate."""

    def __init__(
        self,
        *,
        subscriptions: Iterable[Subscription] = (),
        resource_groups: Iterable[ResourceGroup] = (),
        vnets: Iterable[VNet] = (),
        subnets: Iterable[Subnet] = (),
        nics: Iterable[Nic] = (),
        asgs: Iterable[Asg] = (),
        nsgs: Iterable[Nsg] = (),
        vms: Iterable[Vm] = (),
        private_endpoints: Iterable[PrivateEndpoint] = (),
        public_ips: Iterable[PublicIp] = (),
        report: LoadReport | None = None,
    ) -> None:
        self.subscriptions = _by_key(subscriptions, "subscription_id")
        self.resource_groups = _by_key(resource_groups)
        self.vnets = _by_key(vnets)
        self.subnets = _by_key(subnets)
        self.nics = _by_key(nics)
        self.asgs = _by_key(asgs)
        self.nsgs = _by_key(nsgs)
        self.vms = _by_key(vms)
        self.private_endpoints = _by_key(private_endpoints)
        self.public_ips = _by_key(public_ips)
        self.report = report or LoadReport()
        self._index()

    def _index(self) -> None:
        by_ip: defaultdict[IpAddress, list[IpLocation]] = defaultdict(list)
        by_asg: defaultdict[str, list[IpLocation]] = defaultdict(list)
        nsg_subnets: defaultdict[str, set[str]] = defaultdict(set)
        nsg_nics: defaultdict[str, set[str]] = defaultdict(set)
        for nic in self.nics.values():
            if nic.nsg_id:
                nsg_nics[key(nic.nsg_id)].add(key(nic.id))
            for config in nic.ip_configurations:
                if config.private_ip is None:
                    continue
                subnet = self.subnets.get(key(config.subnet_id)) if config.subnet_id else None
                vnet = self.vnets.get(key(subnet.vnet_id)) if subnet else None
                where = IpLocation(config.private_ip, nic, config, subnet, vnet,
                                   nic.subscription_id, (key(nic.id), config.name.lower()))
                by_ip[config.private_ip].append(where)
                for asg_id in config.asg_ids:
                    by_asg[key(asg_id)].append(where)
        for subnet in self.subnets.values():
            if subnet.nsg_id:
                nsg_subnets[key(subnet.nsg_id)].add(key(subnet.id))
        for nsg in self.nsgs.values():
            nsg_subnets[key(nsg.id)].update(key(s) for s in nsg.subnet_ids)
            nsg_nics[key(nsg.id)].update(key(n) for n in nsg.nic_ids)
        self._by_ip = {ip: tuple(found) for ip, found in by_ip.items()}
        self._locations = tuple(where for found in self._by_ip.values() for where in found)
        self._by_asg = {asg: tuple(found) for asg, found in by_asg.items()}
        self._nsg_subnets = {nsg: tuple(sorted(ids)) for nsg, ids in nsg_subnets.items()}
        self._nsg_nics = {nsg: tuple(sorted(ids)) for nsg, ids in nsg_nics.items()}

    # -- lookups ---------------------------------------------------------------------------

    def ip_locations(self) -> tuple[IpLocation, ...]:
        """Every NIC IP configuration that has a private IP, once each."""
        return self._locations

    def locate_ip(self, ip: str | IpAddress) -> tuple[IpLocation, ...]:
        """Every NIC IP configuration holding ``ip``. VNets may overlap, so there can be several."""
        address = ip_address(ip) if isinstance(ip, str) else ip
        return self._by_ip.get(address, ())

    def asg_members(self, asg_id: str) -> tuple[IpLocation, ...]:
        """The IP configurations that are members of an ASG."""
        return self._by_asg.get(key(asg_id), ())

    def nsg_subnets(self, nsg_id: str) -> tuple[Subnet, ...]:
        """Subnets an NSG protects (from either side of the association)."""
        found = (self.subnets.get(s) for s in self._nsg_subnets.get(key(nsg_id), ()))
        return tuple(s for s in found if s is not None)

    def nsg_nics(self, nsg_id: str) -> tuple[Nic, ...]:
        """NICs an NSG is attached to directly (from either side of the association)."""
        found = (self.nics.get(n) for n in self._nsg_nics.get(key(nsg_id), ()))
        return tuple(n for n in found if n is not None)

    def vnet_of(self, subnet_id: str) -> VNet | None:
        subnet = self.subnets.get(key(subnet_id))
        return self.vnets.get(key(subnet.vnet_id)) if subnet else None

    def vm_of(self, nic: Nic) -> Vm | None:
        return self.vms.get(key(nic.vm_id)) if nic.vm_id else None

    def subscription_name(self, subscription_id: str) -> str:
        sub = self.subscriptions.get(subscription_id.lower())
        return (sub.display_name if sub and sub.display_name else None) or subscription_id

    def counts(self) -> dict[str, int]:
        """Assets per kind, keyed by :class:`AssetKind` values (the CLI's JSON keys)."""
        sizes = {
            AssetKind.SUBSCRIPTION: self.subscriptions,
            AssetKind.RESOURCE_GROUP: self.resource_groups,
            AssetKind.VNET: self.vnets,
            AssetKind.SUBNET: self.subnets,
            AssetKind.NIC: self.nics,
            AssetKind.ASG: self.asgs,
            AssetKind.NSG: self.nsgs,
            AssetKind.VM: self.vms,
            AssetKind.PRIVATE_ENDPOINT: self.private_endpoints,
            AssetKind.PUBLIC_IP: self.public_ips,
        }
        return {kind.value: len(found) for kind, found in sizes.items()}
