"""Sample Azure estates as raw Azure Resource Graph rows.

Every row has the shape ``az graph query`` prints for the ``Resources`` and
``ResourceContainers`` tables: ``id, name, type, tenantId, location, resourceGroup,
subscriptionId, tags, properties`` (plus ``etag``, ``kind`` or ``sku`` where ARM has them),
lower-case ``type`` strings, ARM-cased ids and camelCase ARM REST properties. Raw ARM JSON is the
inventory interchange format (design.md, decision 1), so the demo, the tests and the benchmarks
all start from the same bytes a real tenant export would give.

Two estates are offered:

* :func:`classic_estate` is a hand-modelled hub-and-spoke tenant (payroll web/logic tiers, SAP,
  HDInsight-style analytics, shared services) of about fifty NICs. It is committed as
  ``data/estate.json`` and is the estate the sample flow logs and the detections are written for.
* :func:`scaled_estate` produces the same shapes at any size from a seed, for benchmarks.

Everything is deterministic: GUIDs come from :func:`uuid.uuid5` (classic) or from the seeded
random generator (scaled), never from the clock or the OS.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import math
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

Resource = dict[str, Any]

# Resource Graph `type` values (always lower-case in ARG output).
SUBSCRIPTION_TYPE: Final = "microsoft.resources/subscriptions"
RESOURCE_GROUP_TYPE: Final = "microsoft.resources/subscriptions/resourcegroups"
VNET_TYPE: Final = "microsoft.network/virtualnetworks"
NSG_TYPE: Final = "microsoft.network/networksecuritygroups"
ASG_TYPE: Final = "microsoft.network/applicationsecuritygroups"
NIC_TYPE: Final = "microsoft.network/networkinterfaces"
PUBLIC_IP_TYPE: Final = "microsoft.network/publicipaddresses"
PRIVATE_ENDPOINT_TYPE: Final = "microsoft.network/privateendpoints"
VM_TYPE: Final = "microsoft.compute/virtualmachines"
STORAGE_ACCOUNT_TYPE: Final = "microsoft.storage/storageaccounts"
KEY_VAULT_TYPE: Final = "microsoft.keyvault/vaults"

ESTATE_JSON_PATH: Final = Path(__file__).parent / "data" / "estate.json"

#: Namespace for every uuid5 in the classic estate (itself derived from a fixed DNS name).
SAMPLE_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_DNS, "sample.zts.contoso.example")
#: Azure's OUI; every Azure NIC MAC starts with it.
AZURE_MAC_PREFIX: Final = "00-0D-3A"
#: Azure reserves the first four addresses and the last one of every subnet.
SUBNET_RESERVED_LOW: Final = 4
SUBNET_RESERVED_TOTAL: Final = 5

OsType = Literal["Windows", "Linux"]
PowerState = Literal["running", "deallocated"]

_PROVIDERS = {
    "vnet": "Microsoft.Network/virtualNetworks",
    "nsg": "Microsoft.Network/networkSecurityGroups",
    "asg": "Microsoft.Network/applicationSecurityGroups",
    "nic": "Microsoft.Network/networkInterfaces",
    "pip": "Microsoft.Network/publicIPAddresses",
    "pe": "Microsoft.Network/privateEndpoints",
    "vm": "Microsoft.Compute/virtualMachines",
    "storage": "Microsoft.Storage/storageAccounts",
    "vault": "Microsoft.KeyVault/vaults",
}

_IMAGES: dict[OsType, dict[str, str]] = {
    "Windows": {
        "publisher": "MicrosoftWindowsServer",
        "offer": "WindowsServer",
        "sku": "2022-datacenter-azure-edition",
        "version": "latest",
    },
    "Linux": {
        "publisher": "Canonical",
        "offer": "0001-com-ubuntu-server-jammy",
        "sku": "22_04-lts-gen2",
        "version": "latest",
    },
}

_POWER_STATES: dict[PowerState, dict[str, str]] = {
    "running": {"code": "PowerState/running", "displayStatus": "VM running"},
    "deallocated": {"code": "PowerState/deallocated", "displayStatus": "VM deallocated"},
}

# The six default rules of every NSG: (name, direction, access, priority, source, destination,
# description) exactly as ARM lists them under properties.defaultSecurityRules.
_DEFAULT_RULES: Final = (
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork",
     "Allow inbound traffic from all VMs in VNET"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*",
     "Allow inbound traffic from azure load balancer"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*", "Deny all inbound traffic"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork",
     "Allow outbound traffic from all VMs to all VMs in VNET"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet",
     "Allow outbound traffic from all VMs to Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*", "Deny all outbound traffic"),
)  # fmt: skip


def arm_id(subscription_id: str, resource_group: str, kind: str, name: str) -> str:
    """Build an ARM id in normal ARM casing; ``kind`` is a key of the provider table."""
    provider = _PROVIDERS[kind]
    group = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
    return f"{group}/providers/{provider}/{name}"


def mac_address(value: int) -> str:
    """Format the low 24 bits of ``value`` as an Azure MAC (``00-0D-3A-xx-xx-xx``)."""
    low = value & 0xFFFFFF
    return f"{AZURE_MAC_PREFIX}-{low >> 16:02X}-{(low >> 8) & 0xFF:02X}-{low & 0xFF:02X}"


@dataclass(frozen=True)
class RuleSpec:
    """A hand-made NSG security rule, rendered into the full ARM rule shape by the builder.

    Address sides hold prefixes, IPs or service tags; ``*_asgs`` hold ASG ids. ARM forbids mixing
    ASGs and prefixes on one side, so a side uses one or the other.
    """

    name: str
    priority: int
    direction: Literal["Inbound", "Outbound"]
    access: Literal["Allow", "Deny"]
    protocol: str
    destination_ports: tuple[str, ...]
    sources: tuple[str, ...] = ("*",)
    destinations: tuple[str, ...] = ("*",)
    source_asgs: tuple[str, ...] = ()
    destination_asgs: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class SubnetSpec:
    """A subnet to create inside a VNet (several prefixes give ``addressPrefixes``)."""

    name: str
    prefixes: tuple[str, ...]
    nsg_id: str | None = None
    delegation: str | None = None
    private_endpoint_policies: Literal["Enabled", "Disabled"] = "Disabled"


@dataclass(frozen=True)
class NicSpec:
    """One network interface: where it sits, its address and its ASG memberships."""

    name: str
    subnet_id: str
    ip: str
    mac: str | None
    asg_ids: tuple[str, ...] = ()
    static: bool = False
    public_ip_id: str | None = None
    primary: bool = True


@dataclass(frozen=True)
class VmSpec:
    """A virtual machine; its NICs are listed in order, the first one primary."""

    name: str
    nic_ids: tuple[str, ...]
    os: OsType
    size: str
    power: PowerState = "running"


@dataclass
class EstateBuilder:
    """Accumulates ARM rows and keeps the back-references ARM maintains consistent.

    ARM fills some read-only properties from the other side of a relationship (an NSG lists the
    subnets and NICs it is attached to, a subnet lists the IP configurations inside it). The
    builder keeps those lists in step, so estates are referentially whole by construction.
    """

    tenant_id: str
    new_guid: Callable[[str], str]  # name-derived or random GUIDs, chosen by the caller
    rows: list[Resource] = field(default_factory=list)
    _vnets: dict[str, Resource] = field(default_factory=dict)
    _subnets: dict[str, Resource] = field(default_factory=dict)
    _nsgs: dict[str, Resource] = field(default_factory=dict)
    _macs: set[str] = field(default_factory=set)

    def guid(self, key: str) -> str:
        """A GUID for ``key`` from the caller's GUID source."""
        return self.new_guid(key)

    def drain(self) -> list[Resource]:
        """Hand over the rows built so far and forget them (MAC uniqueness is still checked).

        Only call it when no later row will need a back-reference into the drained ones.
        """
        rows, self.rows = self.rows, []
        self._vnets.clear()
        self._subnets.clear()
        self._nsgs.clear()
        return rows

    def _row(
        self,
        resource_id: str,
        rtype: str,
        location: str,
        tags: Mapping[str, str] | None,
        properties: Resource,
        **extra: Any,
    ) -> Resource:
        parts = resource_id.split("/")
        row: Resource = {
            "id": resource_id,
            "name": parts[-1],
            "type": rtype,
            "tenantId": self.tenant_id,
            "location": location,
            "resourceGroup": parts[4],
            "subscriptionId": parts[2],
        }
        row.update(extra)
        row["tags"] = dict(tags or {})
        row["properties"] = properties
        self.rows.append(row)
        return row

    # -- containers ------------------------------------------------------------------------

    def subscription(
        self, subscription_id: str, display_name: str, tags: Mapping[str, str]
    ) -> None:
        """Add a ``ResourceContainers`` subscription row."""
        self.rows.append(
            {
                "id": f"/subscriptions/{subscription_id}",
                "name": display_name,
                "type": SUBSCRIPTION_TYPE,
                "tenantId": self.tenant_id,
                "location": "",
                "resourceGroup": "",
                "subscriptionId": subscription_id,
                "tags": dict(tags),
                "properties": {
                    "state": "Enabled",
                    "subscriptionPolicies": {
                        "locationPlacementId": "Public_2014-09-01",
                        "quotaId": "EnterpriseAgreement_2014-09-01",
                        "spendingLimit": "Off",
                    },
                },
            }
        )

    def resource_group(
        self, subscription_id: str, name: str, location: str, tags: Mapping[str, str]
    ) -> None:
        """Add a ``ResourceContainers`` resource group row."""
        self.rows.append(
            {
                "id": f"/subscriptions/{subscription_id}/resourceGroups/{name}",
                "name": name,
                "type": RESOURCE_GROUP_TYPE,
                "tenantId": self.tenant_id,
                "location": location,
                "resourceGroup": name,
                "subscriptionId": subscription_id,
                "tags": dict(tags),
                "properties": {"provisioningState": "Succeeded"},
            }
        )

    # -- network security ---------------------------------------------------------------------

    def asg(self, resource_id: str, location: str, tags: Mapping[str, str]) -> str:
        """Add an application security group; returns its id."""
        props = {"provisioningState": "Succeeded", "resourceGuid": self.guid(resource_id)}
        self._row(resource_id, ASG_TYPE, location, tags, props)
        return resource_id

    def nsg(
        self, resource_id: str, location: str, tags: Mapping[str, str], rules: Sequence[RuleSpec]
    ) -> str:
        """Add a network security group with its rules and the six default rules."""
        etag = f'W/"{self.guid(resource_id + "#etag")}"'
        props: Resource = {
            "provisioningState": "Succeeded",
            "resourceGuid": self.guid(resource_id),
            "securityRules": [_security_rule(resource_id, etag, rule) for rule in rules],
            "defaultSecurityRules": [
                _default_rule(resource_id, etag, spec) for spec in _DEFAULT_RULES
            ],
            "subnets": [],
            "networkInterfaces": [],
        }
        row = self._row(resource_id, NSG_TYPE, location, tags, props, etag=etag)
        self._nsgs[resource_id.lower()] = row
        return resource_id

    # -- virtual networks ----------------------------------------------------------------------

    def vnet(
        self,
        resource_id: str,
        location: str,
        tags: Mapping[str, str],
        prefixes: Sequence[str],
        subnets: Sequence[SubnetSpec],
        dns_servers: Sequence[str] = (),
    ) -> dict[str, str]:
        """Add a VNet with its subnets; returns the subnet ids by subnet name."""
        props: Resource = {
            "provisioningState": "Succeeded",
            "resourceGuid": self.guid(resource_id),
            "addressSpace": {"addressPrefixes": list(prefixes)},
            "dhcpOptions": {"dnsServers": list(dns_servers)},
            "subnets": [],
            "virtualNetworkPeerings": [],
            "enableDdosProtection": False,
        }
        row = self._row(resource_id, VNET_TYPE, location, tags, props)
        self._vnets[resource_id.lower()] = row
        ids: dict[str, str] = {}
        for spec in subnets:
            subnet = self._subnet(resource_id, spec)
            props["subnets"].append(subnet)
            ids[spec.name] = subnet["id"]
        return ids

    def _subnet(self, vnet_id: str, spec: SubnetSpec) -> Resource:
        subnet_id = f"{vnet_id}/subnets/{spec.name}"
        props: Resource = {"provisioningState": "Succeeded"}
        if len(spec.prefixes) == 1:
            props["addressPrefix"] = spec.prefixes[0]
        else:
            props["addressPrefixes"] = list(spec.prefixes)
        if spec.nsg_id is not None:
            props["networkSecurityGroup"] = {"id": spec.nsg_id}
            self._nsgs[spec.nsg_id.lower()]["properties"]["subnets"].append({"id": subnet_id})
        props["ipConfigurations"] = []
        props["delegations"] = [_delegation(subnet_id, spec.delegation)] if spec.delegation else []
        props["privateEndpointNetworkPolicies"] = spec.private_endpoint_policies
        props["privateLinkServiceNetworkPolicies"] = "Enabled"
        subnet: Resource = {
            "id": subnet_id,
            "name": spec.name,
            "etag": f'W/"{self.guid(subnet_id)}"',
            "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": props,
        }
        self._subnets[subnet_id.lower()] = subnet
        return subnet

    def peer(self, vnet_a: str, vnet_b: str, *, a_is_hub: bool = False) -> None:
        """Peer two VNets in both directions (a peering row on each VNet, both Connected)."""
        self._peering(vnet_a, vnet_b, gateway_transit=a_is_hub)
        self._peering(vnet_b, vnet_a, gateway_transit=False)

    def _peering(self, local_id: str, remote_id: str, *, gateway_transit: bool) -> None:
        local = self._vnets[local_id.lower()]
        remote = self._vnets[remote_id.lower()]
        name = f"peer-{local['name']}-to-{remote['name']}"
        peering_id = f"{local_id}/virtualNetworkPeerings/{name}"
        remote_space = list(remote["properties"]["addressSpace"]["addressPrefixes"])
        local["properties"]["virtualNetworkPeerings"].append(
            {
                "id": peering_id,
                "name": name,
                "etag": f'W/"{self.guid(peering_id)}"',
                "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
                "properties": {
                    "provisioningState": "Succeeded",
                    "resourceGuid": self.guid(peering_id + "#guid"),
                    "peeringState": "Connected",
                    "peeringSyncLevel": "FullyInSync",
                    "remoteVirtualNetwork": {"id": remote_id},
                    "remoteAddressSpace": {"addressPrefixes": remote_space},
                    "allowVirtualNetworkAccess": True,
                    "allowForwardedTraffic": True,
                    "allowGatewayTransit": gateway_transit,
                    "useRemoteGateways": False,
                },
            }
        )

    # -- compute and interfaces ------------------------------------------------------------------

    def public_ip(
        self,
        resource_id: str,
        location: str,
        tags: Mapping[str, str],
        address: str,
        ipconfig_id: str,
    ) -> str:
        """Add a Standard static public IP associated with a NIC IP configuration."""
        props = {
            "provisioningState": "Succeeded",
            "resourceGuid": self.guid(resource_id),
            "ipAddress": address,
            "publicIPAddressVersion": "IPv4",
            "publicIPAllocationMethod": "Static",
            "idleTimeoutInMinutes": 4,
            "ipTags": [],
            "ipConfiguration": {"id": ipconfig_id},
        }
        sku = {"name": "Standard", "tier": "Regional"}
        self._row(resource_id, PUBLIC_IP_TYPE, location, tags, props, sku=sku)
        return resource_id

    def nic(
        self,
        resource_id: str,
        location: str,
        tags: Mapping[str, str],
        spec: NicSpec,
        *,
        vm_id: str | None = None,
        private_endpoint: tuple[str, str, str] | None = None,
    ) -> str:
        """Add a NIC with one IP configuration.

        ``private_endpoint`` is ``(endpoint id, group id, fqdn)`` for the NIC Azure creates for a
        private endpoint; such NICs have no MAC address and no VM.
        """
        config_name = "ipconfig1"
        if private_endpoint is not None:
            config_name = f"privateEndpointIpConfig.{self.guid(resource_id + '#ipconfig')}"
        ipconfig_id = f"{resource_id}/ipConfigurations/{config_name}"
        config: Resource = {
            "provisioningState": "Succeeded",
            "privateIPAddress": spec.ip,
            "privateIPAllocationMethod": "Static" if spec.static else "Dynamic",
            "subnet": {"id": spec.subnet_id},
            "primary": True,
            "privateIPAddressVersion": "IPv4",
        }
        if spec.asg_ids:
            config["applicationSecurityGroups"] = [{"id": asg} for asg in spec.asg_ids]
        if spec.public_ip_id:
            config["publicIPAddress"] = {"id": spec.public_ip_id}
        props: Resource = {
            "provisioningState": "Succeeded",
            "resourceGuid": self.guid(resource_id),
            "ipConfigurations": [
                {
                    "id": ipconfig_id,
                    "name": config_name,
                    "etag": f'W/"{self.guid(resource_id + "#etag")}"',
                    "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                    "properties": config,
                }
            ],
            "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        }
        if private_endpoint is not None:
            endpoint_id, group_id, fqdn = private_endpoint
            config["privateLinkConnectionProperties"] = {
                "groupId": group_id,
                "requiredMemberName": group_id,
                "fqdns": [fqdn],
            }
            props["privateEndpoint"] = {"id": endpoint_id}
        if spec.mac is not None:
            if spec.mac in self._macs:
                raise ValueError(f"duplicate MAC address {spec.mac} on {resource_id}")
            self._macs.add(spec.mac)
            props["macAddress"] = spec.mac
        props["enableAcceleratedNetworking"] = private_endpoint is None
        props["enableIPForwarding"] = False
        props["nicType"] = "Standard"
        if vm_id is not None:
            props["primary"] = spec.primary
            props["virtualMachine"] = {"id": vm_id}
        self._subnets[spec.subnet_id.lower()]["properties"]["ipConfigurations"].append(
            {"id": ipconfig_id}
        )
        self._row(resource_id, NIC_TYPE, location, tags, props)
        return resource_id

    def vm(self, resource_id: str, location: str, tags: Mapping[str, str], spec: VmSpec) -> str:
        """Add a virtual machine referencing its NICs (the first one primary)."""
        props: Resource = {
            "provisioningState": "Succeeded",
            "vmId": self.guid(resource_id),
            "hardwareProfile": {"vmSize": spec.size},
            "storageProfile": {
                "imageReference": dict(_IMAGES[spec.os]),
                "osDisk": {
                    "osType": spec.os,
                    "name": f"{spec.name}_OsDisk_1",
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": {"storageAccountType": "Premium_LRS"},
                    "diskSizeGB": 127 if spec.os == "Windows" else 64,
                },
                "dataDisks": [],
            },
            "osProfile": {"computerName": spec.name[:15], "adminUsername": "azureadmin"},
            "networkProfile": {
                "networkInterfaces": [
                    {"id": nic_id, "properties": {"primary": index == 0}}
                    for index, nic_id in enumerate(spec.nic_ids)
                ]
            },
            "extended": {"instanceView": {"powerState": dict(_POWER_STATES[spec.power])}},
        }
        self._row(resource_id, VM_TYPE, location, tags, props)
        return resource_id

    def private_endpoint(
        self,
        resource_id: str,
        location: str,
        tags: Mapping[str, str],
        *,
        subnet_id: str,
        ip: str,
        target_id: str,
        group_id: str,
        fqdn: str,
    ) -> str:
        """Add a private endpoint and the NIC Azure creates for it."""
        name = resource_id.rsplit("/", 1)[-1]
        rg_prefix = resource_id.split("/providers/")[0]
        nic_id = f"{rg_prefix}/providers/{_PROVIDERS['nic']}/{name}.nic.{self.guid(resource_id)}"
        connection_id = f"{resource_id}/privateLinkServiceConnections/{name}"
        props: Resource = {
            "provisioningState": "Succeeded",
            "resourceGuid": self.guid(resource_id + "#guid"),
            "subnet": {"id": subnet_id},
            "networkInterfaces": [{"id": nic_id}],
            "privateLinkServiceConnections": [
                {
                    "id": connection_id,
                    "name": name,
                    "etag": f'W/"{self.guid(connection_id)}"',
                    "type": "Microsoft.Network/privateEndpoints/privateLinkServiceConnections",
                    "properties": {
                        "provisioningState": "Succeeded",
                        "privateLinkServiceId": target_id,
                        "groupIds": [group_id],
                        "privateLinkServiceConnectionState": {
                            "status": "Approved",
                            "description": "Auto-Approved",
                            "actionsRequired": "None",
                        },
                    },
                }
            ],
            "manualPrivateLinkServiceConnections": [],
            "customDnsConfigs": [{"fqdn": fqdn, "ipAddresses": [ip]}],
        }
        self._row(resource_id, PRIVATE_ENDPOINT_TYPE, location, tags, props)
        spec = NicSpec(name=nic_id.rsplit("/", 1)[-1], subnet_id=subnet_id, ip=ip, mac=None)
        # Azure creates the endpoint's NIC itself, untagged.
        self.nic(nic_id, location, {}, spec, private_endpoint=(resource_id, group_id, fqdn))
        return resource_id

    def paas(
        self,
        resource_id: str,
        rtype: str,
        location: str,
        tags: Mapping[str, str],
        props: Resource,
        **extra: Any,
    ) -> str:
        """Add a PaaS resource (storage account, key vault) that private endpoints target."""
        self._row(resource_id, rtype, location, tags, props, **extra)
        return resource_id


def _delegation(subnet_id: str, service: str) -> Resource:
    name = service.replace("/", ".")
    return {
        "id": f"{subnet_id}/delegations/{name}",
        "name": name,
        "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
        "properties": {
            "provisioningState": "Succeeded",
            "serviceName": service,
            "actions": ["Microsoft.Network/virtualNetworks/subnets/action"],
        },
    }


def _address_side(prefix: str, values: tuple[str, ...], asgs: tuple[str, ...]) -> Resource:
    """ARM GET shape of one rule side: singular when one value, plural array always present."""
    side: Resource = {}
    if asgs:
        side[f"{prefix}AddressPrefixes"] = []
        side[f"{prefix}ApplicationSecurityGroups"] = [{"id": asg} for asg in asgs]
    elif len(values) == 1:
        side[f"{prefix}AddressPrefix"] = values[0]
        side[f"{prefix}AddressPrefixes"] = []
    else:
        side[f"{prefix}AddressPrefixes"] = list(values)
    return side


def _security_rule(nsg_id: str, etag: str, rule: RuleSpec) -> Resource:
    props: Resource = {
        "provisioningState": "Succeeded",
        "description": rule.description,
        "protocol": rule.protocol,
        "sourcePortRange": "*",
        "sourcePortRanges": [],
    }
    if len(rule.destination_ports) == 1:
        props["destinationPortRange"] = rule.destination_ports[0]
        props["destinationPortRanges"] = []
    else:
        props["destinationPortRanges"] = list(rule.destination_ports)
    props.update(_address_side("source", rule.sources, rule.source_asgs))
    props.update(_address_side("destination", rule.destinations, rule.destination_asgs))
    props.update(access=rule.access, priority=rule.priority, direction=rule.direction)
    return {
        "id": f"{nsg_id}/securityRules/{rule.name}",
        "name": rule.name,
        "etag": etag,
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": props,
    }


def _default_rule(nsg_id: str, etag: str, spec: tuple[Any, ...]) -> Resource:
    name, direction, access, priority, source, destination, description = spec
    return {
        "id": f"{nsg_id}/defaultSecurityRules/{name}",
        "name": name,
        "etag": etag,
        "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
        "properties": {
            "provisioningState": "Succeeded",
            "description": description,
            "protocol": "*",
            "sourcePortRange": "*",
            "destinationPortRange": "*",
            "sourceAddressPrefix": source,
            "destinationAddressPrefix": destination,
            "access": access,
            "priority": priority,
            "direction": direction,
            "sourcePortRanges": [],
            "destinationPortRanges": [],
            "sourceAddressPrefixes": [],
            "destinationAddressPrefixes": [],
        },
    }


# =============================================================================================
# The classic estate
# =============================================================================================

TENANT_NAME: Final = "contoso.example"
LOCATION: Final = "westeurope"
ANALYTICS_LOCATION: Final = "northeurope"
JUMP_HOST_CIDR: Final = "10.0.1.16/28"
ON_PREM_ADMIN_CIDR: Final = "192.168.100.0/24"
#: The documentation-range (RFC 5737) public address of payroll-web-01.
PAYROLL_WEB_PUBLIC_IP: Final = "192.0.2.10"


def _name_guid(key: str) -> str:
    return str(uuid.uuid5(SAMPLE_NAMESPACE, key))


def _name_mac(name: str) -> str:
    return mac_address(int.from_bytes(uuid.uuid5(SAMPLE_NAMESPACE, "mac:" + name).bytes[:3]))


def subscription_guid(display_name: str) -> str:
    """The deterministic GUID of a classic-estate subscription, from its display name."""
    return _name_guid("subscription:" + display_name)


@dataclass(frozen=True)
class _Host:
    """A VM of the classic estate with its NIC(s); ``extra_nics`` are (suffix, ip) pairs."""

    name: str
    subnet: str
    ip: str
    tags: Mapping[str, str]
    os: OsType = "Linux"
    size: str = "Standard_D4s_v5"
    asgs: tuple[str, ...] = ()
    static: bool = False
    public_ip: str | None = None
    power: PowerState = "running"
    extra_nics: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Spoke:
    """One subscription of the classic estate: its VNet, NSGs, ASGs and hosts."""

    subscription: str
    short: str
    location: str
    cost_center: str
    owner: str
    vnet: str
    prefixes: tuple[str, ...]
    subnets: tuple[tuple[str, tuple[str, ...], str | None, str | None], ...]
    nsg_rules: Mapping[str, tuple[RuleSpec, ...]]
    asgs: tuple[str, ...]
    host_groups: Mapping[str, tuple[_Host, ...]]  # resource group suffix -> hosts


def _tags(
    app: str, env: str, tier: str, owner: str, cost_center: str, **more: str
) -> dict[str, str]:
    tags = {"app": app, "env": env, "tier": tier, "owner": owner, "cost-center": cost_center}
    tags.update({key.replace("_", "-"): value for key, value in more.items()})
    return tags


def _rdp_from_jump(priority: int, cidr: str = JUMP_HOST_CIDR) -> RuleSpec:
    return RuleSpec(
        "AllowRdpFromJumpHosts",
        priority,
        "Inbound",
        "Allow",
        "Tcp",
        ("3389",),
        sources=(cidr,),
        description="RDP from the hub jump hosts (ticket OPS-1187)",
    )


def _ssh_from_jump(priority: int, cidr: str = JUMP_HOST_CIDR) -> RuleSpec:
    return RuleSpec(
        "AllowSshFromJumpHosts",
        priority,
        "Inbound",
        "Allow",
        "Tcp",
        ("22",),
        sources=(cidr,),
        description="SSH from the hub jump hosts",
    )


def _hub() -> _Spoke:
    owner, cc = "netops@contoso.example", "CC-1000"
    shared = {"app": "shared-services", "env": "prod", "owner": owner, "cost_center": cc}
    return _Spoke(
        subscription="Connectivity-Hub", short="hub", location=LOCATION, cost_center=cc,
        owner=owner, vnet="hub-vnet", prefixes=("10.0.0.0/16",),
        subnets=(
            ("AzureFirewallSubnet", ("10.0.0.0/26",), None, None),
            ("GatewaySubnet", ("10.0.0.64/27",), None, None),
            ("AzureBastionSubnet", ("10.0.0.128/26",), None, None),
            ("shared", ("10.0.1.0/24",), "nsg-hub-shared", None),
            ("analytics", ("10.0.2.0/24",), "nsg-hub-analytics", None),
        ),
        nsg_rules={
            "nsg-hub-shared": (
                RuleSpec("AllowDnsFromEstate", 200, "Inbound", "Allow", "*", ("53",),
                         sources=("10.0.0.0/8",), description="Name resolution for all spokes"),
                RuleSpec("AllowRdpFromCorp", 210, "Inbound", "Allow", "Tcp", ("3389",),
                         sources=(ON_PREM_ADMIN_CIDR,), destinations=(JUMP_HOST_CIDR,),
                         description="Admins from the corporate network to the jump hosts"),
            ),
            "nsg-hub-analytics": (_rdp_from_jump(200),),
        },
        asgs=(),
        host_groups={
            "dns": (
                _Host("hub-dns-01", "shared", "10.0.1.4", _tags(tier="infra", role="dns", **shared),
                      os="Windows", size="Standard_D2s_v5", static=True),
                _Host("hub-dns-02", "shared", "10.0.1.5", _tags(tier="infra", role="dns", **shared),
                      os="Windows", size="Standard_D2s_v5", static=True),
            ),
            "mgmt": (
                _Host("hub-mon-01", "shared", "10.0.1.6",
                      _tags(tier="infra", role="monitoring", **shared), size="Standard_D2s_v5"),
                _Host("hub-jump-01", "shared", "10.0.1.20",
                      _tags(tier="mgmt", role="jumphost", **shared), os="Windows",
                      size="Standard_B2ms", static=True),
                _Host("hub-jump-02", "shared", "10.0.1.21",
                      _tags(tier="mgmt", role="jumphost", **shared), size="Standard_B2ms",
                      static=True),
            ),
            "reporting": (
                _Host("hub-pbigw-01", "analytics", "10.0.2.4",
                      _tags("reporting", "prod", "app", "bi-team@contoso.example", "CC-4100",
                            role="gateway"), os="Windows"),
                _Host("hub-pbigw-02", "analytics", "10.0.2.5",
                      _tags("reporting", "dev", "app", "bi-team@contoso.example", "CC-4100",
                            role="gateway"), os="Windows", size="Standard_D2s_v5"),
            ),
        },
    )  # fmt: skip


def _payroll() -> _Spoke:
    owner, cc = "payroll-team@contoso.example", "CC-2100"
    web = {"app": "payroll", "tier": "web", "owner": owner, "cost-center": cc}
    app = {"app": "payroll", "tier": "app", "owner": owner, "cost-center": cc}
    prod, dev = {"env": "prod"}, {"env": "dev"}
    return _Spoke(
        subscription="Payroll-Prod", short="payroll", location=LOCATION, cost_center=cc,
        owner=owner, vnet="payroll-vnet", prefixes=("10.10.0.0/16",),
        subnets=(
            ("web", ("10.10.1.0/24",), "nsg-payroll-web", None),
            ("app", ("10.10.2.0/24",), "nsg-payroll-app", None),
            ("batch", ("10.10.3.0/24",), "nsg-payroll-app", None),
        ),
        nsg_rules={
            "nsg-payroll-web": (
                RuleSpec("AllowHttpsInbound", 100, "Inbound", "Allow", "Tcp", ("443",),
                         sources=("Internet",), destination_asgs=("Web",),
                         description="Public payroll portal"),
                _rdp_from_jump(110),
            ),
            "nsg-payroll-app": (
                RuleSpec("AllowWebToLogic", 100, "Inbound", "Allow", "Tcp", ("443", "8443"),
                         source_asgs=("Web",), destination_asgs=("Logic",),
                         description="Portal to payroll logic tier"),
                _rdp_from_jump(110),
            ),
        },
        asgs=("Web", "Logic"),
        host_groups={
            "web": (
                _Host("payroll-web-01", "web", "10.10.1.4", web | prod, os="Windows",
                      asgs=("Web",), public_ip=PAYROLL_WEB_PUBLIC_IP),
                _Host("payroll-web-02", "web", "10.10.1.5", web | prod, os="Windows",
                      asgs=("Web",)),
                _Host("payroll-web-03", "web", "10.10.1.6", web | dev, os="Windows",
                      asgs=("Web",), size="Standard_B2ms"),
                _Host("payroll-web-04", "web", "10.10.1.7", web | dev, os="Windows",
                      asgs=("Web",), size="Standard_B2ms", power="deallocated"),
            ),
            "app": (
                _Host("payroll-app-01", "app", "10.10.2.4", app | prod, os="Windows",
                      asgs=("Logic",), size="Standard_E4s_v5"),
                _Host("payroll-app-02", "app", "10.10.2.5", app | prod, os="Windows",
                      asgs=("Logic",), size="Standard_E4s_v5"),
                _Host("payroll-batch-01", "batch", "10.10.3.4", app | prod | {"role": "batch"}),
                _Host("payroll-batch-02", "batch", "10.10.3.5", app | prod | {"role": "batch"}),
            ),
        },
    )  # fmt: skip


def _erp() -> _Spoke:
    owner, cc = "sap-basis@contoso.example", "CC-3300"
    sap = {"app": "sap", "env": "prod", "tier": "app", "owner": owner, "cost-center": cc}
    db = {"app": "sap", "env": "prod", "tier": "db", "owner": "dba@contoso.example",
          "cost-center": cc}  # fmt: skip
    return _Spoke(
        subscription="ERP-Prod", short="erp", location=LOCATION, cost_center=cc, owner=owner,
        vnet="erp-vnet", prefixes=("10.20.0.0/16",),
        subnets=(
            ("sap", ("10.20.1.0/24",), "nsg-erp-sap", None),
            ("db", ("10.20.2.0/24",), "nsg-erp-db", None),
            ("pe", ("10.20.3.0/27",), None, None),
        ),
        nsg_rules={
            "nsg-erp-sap": (
                RuleSpec("AllowLogicToSap", 100, "Inbound", "Allow", "Tcp", ("3200", "3300"),
                         sources=("10.10.2.0/24",), destination_asgs=("SAP",),
                         description="Payroll logic tier to SAP dispatcher and gateway"),
                _ssh_from_jump(110),
            ),
            "nsg-erp-db": (
                RuleSpec("AllowSqlFromApps", 100, "Inbound", "Allow", "Tcp", ("1433",),
                         sources=("10.10.2.0/24", "10.20.1.0/24"),
                         description="SQL from payroll logic and SAP application servers"),
                _rdp_from_jump(110),
                RuleSpec("AllowAzureMonitorOutbound", 3900, "Outbound", "Allow", "Tcp", ("443",),
                         destinations=("AzureMonitor",), description="Monitoring agent"),
                RuleSpec("DenyInternetOutbound", 4000, "Outbound", "Deny", "*", ("*",),
                         destinations=("Internet",), description="Databases never talk out"),
            ),
        },
        asgs=("SAP",),
        host_groups={
            "sap": (
                _Host("erp-sap-01", "sap", "10.20.1.4", sap | {"role": "ascs"}, asgs=("SAP",),
                      size="Standard_E8s_v5"),
                _Host("erp-sap-02", "sap", "10.20.1.5", sap | {"role": "pas"}, asgs=("SAP",),
                      size="Standard_E16s_v5"),
                _Host("erp-sap-03", "sap", "10.20.1.6", sap | {"role": "aas"}, asgs=("SAP",),
                      size="Standard_E16s_v5"),
                _Host("erp-sap-04", "sap", "10.20.1.7", sap | {"role": "aas"}, asgs=("SAP",),
                      size="Standard_E16s_v5"),
                _Host("erp-webdisp-01", "sap", "10.20.1.8", sap | {"role": "webdispatcher"},
                      asgs=("SAP",), size="Standard_D4s_v5"),
                _Host("erp-sapdev-01", "sap", "10.20.1.9", sap | {"env": "dev", "role": "sandbox"},
                      asgs=("SAP",), size="Standard_E8s_v5"),
            ),
            "db": (
                _Host("erp-db-01", "db", "10.20.2.4", db, os="Windows", size="Standard_E32s_v5",
                      static=True, extra_nics=(("backup", "10.20.2.36"),)),
                _Host("erp-db-02", "db", "10.20.2.5", db, os="Windows", size="Standard_E32s_v5",
                      static=True, extra_nics=(("backup", "10.20.2.37"),)),
            ),
        },
    )  # fmt: skip


def _analytics() -> _Spoke:
    owner, cc = "data-platform@contoso.example", "CC-4100"

    def hdi(role: str, tier: str, env: str = "prod") -> dict[str, str]:
        return {"app": "hdinsight", "env": env, "tier": tier, "role": role, "owner": owner,
                "cost-center": cc, "cluster": "hdi-prod"}  # fmt: skip

    heads = tuple(
        _Host(f"hn{i}-hdiprod", "hdi", f"10.30.0.{4 + i}", hdi("headnode", "app"),
              size="Standard_E8_v3") for i in range(2)
    )  # fmt: skip
    workers = tuple(
        _Host(f"wn{i}-hdiprod", "hdi", f"10.30.0.{10 + i}", hdi("workernode", "app"),
              size="Standard_D13_v2") for i in range(10)
    )  # fmt: skip
    keepers = tuple(
        _Host(f"zk{i}-hdiprod", "hdi", f"10.30.0.{30 + i}", hdi("zookeepernode", "app"),
              size="Standard_A2_v2") for i in range(3)
    )  # fmt: skip
    edge = (
        _Host("ed0-hdiprod", "hdi", "10.30.0.40", hdi("edgenode", "app"), size="Standard_D4s_v5"),
        _Host("dsvm-analyst-01", "hdi", "10.30.0.50", hdi("workstation", "app", env="dev"),
              os="Windows", size="Standard_NC4as_T4_v3"),
    )  # fmt: skip
    return _Spoke(
        subscription="Analytics",
        short="analytics",
        location=ANALYTICS_LOCATION,
        cost_center=cc,
        owner=owner,
        vnet="hdi-vnet",
        prefixes=("10.30.0.0/16",),
        subnets=(
            ("hdi", ("10.30.0.0/24", "10.30.4.0/24"), "nsg-hdi", None),
            ("ingest-func", ("10.30.8.0/26",), "nsg-hdi", "Microsoft.Web/serverFarms"),
        ),
        nsg_rules={
            "nsg-hdi": (
                RuleSpec(
                    "AllowHDInsightManagement",
                    300,
                    "Inbound",
                    "Allow",
                    "Tcp",
                    ("443",),
                    sources=("HDInsight",),
                    destinations=("VirtualNetwork",),
                    description="HDInsight health and management service",
                ),
                _ssh_from_jump(310),
            ),
        },
        asgs=(),
        host_groups={"hdi": heads + workers + keepers + edge},
    )


def _storage_props(storage_id: str, name: str, pe_id: str) -> Resource:
    connection = f"{pe_id.rsplit('/', 1)[-1]}.{_name_guid(pe_id)}"
    return {
        "provisioningState": "Succeeded",
        "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"},
        "publicNetworkAccess": "Disabled",
        "minimumTlsVersion": "TLS1_2",
        "networkAcls": {
            "bypass": "AzureServices",
            "defaultAction": "Deny",
            "ipRules": [],
            "virtualNetworkRules": [],
        },
        "privateEndpointConnections": [
            {
                "id": f"{storage_id}/privateEndpointConnections/{connection}",
                "name": connection,
                "type": "Microsoft.Storage/storageAccounts/privateEndpointConnections",
                "properties": {
                    "privateEndpoint": {"id": pe_id},
                    "privateLinkServiceConnectionState": {"status": "Approved"},
                },
            }
        ],
    }


class _ClassicWriter:
    """Turns the classic ``_Spoke`` descriptions into ARM rows through an :class:`EstateBuilder`."""

    def __init__(self) -> None:
        self.b = EstateBuilder(tenant_id=_name_guid("tenant:" + TENANT_NAME), new_guid=_name_guid)
        self.vnet_ids: dict[str, str] = {}
        self.subnet_ids: dict[str, dict[str, str]] = {}

    def spoke(self, spoke: _Spoke, dns_servers: Sequence[str]) -> None:
        sub = subscription_guid(spoke.subscription)
        base = {"env": "prod", "owner": spoke.owner, "cost-center": spoke.cost_center}
        net_rg = f"rg-{spoke.short}-network"
        self.b.subscription(sub, spoke.subscription, {"cost-center": spoke.cost_center})
        self.b.resource_group(sub, net_rg, spoke.location, base)
        for suffix in spoke.host_groups:
            self.b.resource_group(sub, f"rg-{spoke.short}-{suffix}", spoke.location, base)
        self.b.resource_group(sub, "NetworkWatcherRG", spoke.location, {})
        asg_ids = {
            name: self.b.asg(arm_id(sub, net_rg, "asg", name), spoke.location, base)
            for name in spoke.asgs
        }
        nsg_ids = {
            name: self.b.nsg(
                arm_id(sub, net_rg, "nsg", name),
                spoke.location,
                base,
                [_resolve_asgs(rule, asg_ids) for rule in rules],
            )
            for name, rules in spoke.nsg_rules.items()
        }
        subnets = [
            SubnetSpec(name, prefixes, nsg_ids[nsg] if nsg else None, delegation)
            for name, prefixes, nsg, delegation in spoke.subnets
        ]
        vnet_id = arm_id(sub, net_rg, "vnet", spoke.vnet)
        self.vnet_ids[spoke.short] = vnet_id
        self.subnet_ids[spoke.short] = self.b.vnet(
            vnet_id, spoke.location, base, spoke.prefixes, subnets, dns_servers
        )
        for suffix, hosts in spoke.host_groups.items():
            for host in hosts:
                self.host(sub, f"rg-{spoke.short}-{suffix}", spoke, host, asg_ids)

    def host(
        self, sub: str, rg: str, spoke: _Spoke, host: _Host, asg_ids: Mapping[str, str]
    ) -> None:
        subnet_id = self.subnet_ids[spoke.short][host.subnet]
        vm_id = arm_id(sub, rg, "vm", host.name)
        nic_ids: list[str] = []
        nics = (
            (f"{host.name}-nic", host.ip, True),
            *((f"{host.name}-{suffix}-nic", ip, False) for suffix, ip in host.extra_nics),
        )
        for nic_name, ip, primary in nics:
            nic_id = arm_id(sub, rg, "nic", nic_name)
            pip_id = None
            if primary and host.public_ip:
                pip_id = arm_id(sub, rg, "pip", f"{host.name}-pip")
                config_id = f"{nic_id}/ipConfigurations/ipconfig1"
                self.b.public_ip(pip_id, spoke.location, host.tags, host.public_ip, config_id)
            spec = NicSpec(
                nic_name,
                subnet_id,
                ip,
                _name_mac(nic_name),
                asg_ids=tuple(asg_ids[a] for a in host.asgs) if primary else (),
                static=host.static,
                public_ip_id=pip_id,
                primary=primary,
            )
            nic_ids.append(self.b.nic(nic_id, spoke.location, host.tags, spec, vm_id=vm_id))
        vm = VmSpec(host.name, tuple(nic_ids), host.os, host.size, host.power)
        self.b.vm(vm_id, spoke.location, host.tags, vm)

    def erp_private_endpoints(self) -> None:
        """Backup storage and the ERP key vault, reached through private endpoints."""
        sub = subscription_guid("ERP-Prod")
        rg = "rg-erp-data"
        tags = {
            "app": "sap",
            "env": "prod",
            "owner": "sap-basis@contoso.example",
            "cost-center": "CC-3300",
        }
        self.b.resource_group(sub, rg, LOCATION, tags)
        subnet_id = self.subnet_ids["erp"]["pe"]
        targets = (
            ("sterpbackupprod", "storage", "blob", "10.20.3.4", "blob.core.windows.net"),
            ("kv-erp-prod", "vault", "vault", "10.20.3.5", "vault.azure.net"),
        )
        for name, kind, group, ip, zone in targets:
            target_id = arm_id(sub, rg, kind, name)
            pe_id = arm_id(sub, rg, "pe", f"pe-{name}-{group}")
            if kind == "storage":
                self.b.paas(
                    target_id,
                    STORAGE_ACCOUNT_TYPE,
                    LOCATION,
                    tags,
                    _storage_props(target_id, name, pe_id),
                    kind="StorageV2",
                    sku={"name": "Standard_GRS", "tier": "Standard"},
                )
            else:
                self.b.paas(
                    target_id,
                    KEY_VAULT_TYPE,
                    LOCATION,
                    tags,
                    {
                        "provisioningState": "Succeeded",
                        "tenantId": self.b.tenant_id,
                        "vaultUri": f"https://{name}.vault.azure.net/",
                        "publicNetworkAccess": "Disabled",
                        "enableRbacAuthorization": True,
                    },
                )
            self.b.private_endpoint(
                pe_id,
                LOCATION,
                tags,
                subnet_id=subnet_id,
                ip=ip,
                target_id=target_id,
                group_id=group,
                fqdn=f"{name}.{zone}",
            )


def _resolve_asgs(rule: RuleSpec, asg_ids: Mapping[str, str]) -> RuleSpec:
    """Replace ASG names in a rule by the ids of the ASGs of the same spoke."""
    return RuleSpec(
        rule.name,
        rule.priority,
        rule.direction,
        rule.access,
        rule.protocol,
        rule.destination_ports,
        rule.sources,
        rule.destinations,
        tuple(asg_ids[name] for name in rule.source_asgs),
        tuple(asg_ids[name] for name in rule.destination_asgs),
        rule.description,
    )


def classic_estate() -> list[Resource]:
    """The hand-modelled sample tenant: a hub and three spokes in four subscriptions.

    * Connectivity-Hub: ``hub-vnet`` 10.0.0.0/16 with firewall/gateway/bastion subnets, a
      ``shared`` subnet (two DNS servers, two jump hosts in 10.0.1.16/28) and an ``analytics``
      subnet (reporting gateways).
    * Payroll-Prod: ``payroll-vnet`` 10.10.0.0/16; web VMs in ASG ``Web`` (one with public IP
      192.0.2.10, two dev VMs, one of them deallocated), logic VMs in ASG ``Logic``, batch VMs.
    * ERP-Prod: ``erp-vnet`` 10.20.0.0/16; SAP VMs in ASG ``SAP`` (``app=sap``), two SQL VMs
      (``tier=db``) with a second backup NIC each, private endpoints to a storage account and a
      key vault.
    * Analytics: ``hdi-vnet`` 10.30.0.0/16 (northeurope); an HDInsight-like cluster (head, worker,
      zookeeper and edge nodes, ``app=hdinsight``) and a subnet delegated to
      ``Microsoft.Web/serverFarms``.

    The hub is peered with each spoke, and payroll is also peered directly with ERP (its logic
    tier calls SAP) and with analytics (a reporting shortcut). All peerings exist on both VNets.
    """
    writer = _ClassicWriter()
    hub = _hub()
    dns = [host.ip for hosts in hub.host_groups.values() for host in hosts
           if host.tags.get("role") == "dns"]  # fmt: skip
    writer.spoke(hub, ())
    for spoke in (_payroll(), _erp(), _analytics()):
        writer.spoke(spoke, dns)
    writer.erp_private_endpoints()
    vnets = writer.vnet_ids
    for spoke_name in ("payroll", "erp", "analytics"):
        writer.b.peer(vnets["hub"], vnets[spoke_name], a_is_hub=True)
    writer.b.peer(vnets["payroll"], vnets["erp"])
    writer.b.peer(vnets["payroll"], vnets["analytics"])
    return writer.b.rows


def estate_json(resources: Iterable[Resource]) -> str:
    """Canonical text of an estate file: ``{"data": [...]}`` as ``az graph query`` prints it."""
    return json.dumps({"data": list(resources)}, indent=2, ensure_ascii=False) + "\n"


def write_estate(path: Path = ESTATE_JSON_PATH) -> Path:
    """Write the classic estate to ``path`` (by default the committed ``data/estate.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(estate_json(classic_estate()), encoding="utf-8")
    return path


def load_estate(path: Path = ESTATE_JSON_PATH) -> list[Resource]:
    """Read an estate file written as a JSON array or as ``{"data": [...]}``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    rows = document["data"] if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array or an object with a 'data' array")
    return rows


# =============================================================================================
# The scaled estate
# =============================================================================================

#: Address pools for scaled estates, used in this order.
SCALED_POOLS: Final = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12")
#: RFC 2544 benchmarking range, used for the public IPs of scaled estates.
SCALED_PUBLIC_POOL: Final = "198.18.0.0/15"
_SCALED_TIERS: Final = ("web", "app", "db")
_SCALED_APPS: Final = (
    "payroll", "sap", "crm", "billing", "hr", "portal", "search", "iam", "reporting",
    "inventory", "claims", "pricing", "ledger", "messaging", "catalog", "analytics",
)  # fmt: skip
_SCALED_OWNERS: Final = {app: f"{app}-team@contoso.example" for app in _SCALED_APPS}
_SCALED_COST_CENTERS: Final = tuple(f"CC-{1000 + n}" for n in range(40))
_SCALED_LOCATIONS: Final = ("westeurope", "northeurope", "swedencentral", "germanywestcentral")
_MAC_MULTIPLIER: Final = 0x9E3779  # odd, so counter -> MAC suffix is a bijection modulo 2**24


class AddressPlanExhausted(ValueError):
    """Raised when the scaled estate needs more address space than the pools hold."""


class _Allocator:
    """Hands out aligned, non-overlapping blocks from the pools in order."""

    def __init__(self, pools: Sequence[str]) -> None:
        self._pools = [ipaddress.IPv4Network(pool) for pool in pools]
        self._index = 0
        self._cursor = int(self._pools[0].network_address)

    def block(self, prefix_length: int) -> ipaddress.IPv4Network:
        size = 1 << (32 - prefix_length)
        while self._index < len(self._pools):
            pool = self._pools[self._index]
            if prefix_length >= pool.prefixlen:
                start = -(-self._cursor // size) * size  # align up
                if start + size <= int(pool.broadcast_address) + 1:
                    self._cursor = start + size
                    return ipaddress.IPv4Network((start, prefix_length))
            self._index += 1
            if self._index < len(self._pools):
                self._cursor = int(self._pools[self._index].network_address)
        raise AddressPlanExhausted(f"no room left for a /{prefix_length} in {list(SCALED_POOLS)}")


def _host_bits(hosts: int) -> int:
    """Host bits of the smallest subnet (at least a /29, Azure's minimum) holding ``hosts``."""
    return max(3, math.ceil(math.log2(hosts + SUBNET_RESERVED_TOTAL)))


@dataclass
class _ScaledContext:
    """The state of one scaled-estate build: builder, random source, address allocators."""

    b: EstateBuilder
    rng: random.Random
    allocator: _Allocator
    public_ips: Iterator[ipaddress.IPv4Address]
    nic_counter: int = 0


def _scaled_nsg_rules(
    tier: str, asgs: Mapping[str, str], app_prefix: str, jump_cidr: str
) -> list[RuleSpec]:
    if tier == "web":
        return [
            RuleSpec("AllowHttpsInbound", 100, "Inbound", "Allow", "Tcp", ("443",),
                     sources=("Internet",), destination_asgs=(asgs["web"],)),
            _rdp_from_jump(110, jump_cidr),
        ]  # fmt: skip
    if tier == "app":
        return [
            RuleSpec("AllowWebToApp", 100, "Inbound", "Allow", "Tcp", ("443", "8443"),
                     source_asgs=(asgs["web"],), destination_asgs=(asgs["app"],)),
            _ssh_from_jump(110, jump_cidr),
        ]  # fmt: skip
    return [
        RuleSpec("AllowSqlFromApp", 100, "Inbound", "Allow", "Tcp", ("1433",),
                 sources=(app_prefix,)),
        RuleSpec("AllowAzureMonitorOutbound", 3900, "Outbound", "Allow", "Tcp", ("443",),
                 destinations=("AzureMonitor",)),
        RuleSpec("DenyInternetOutbound", 4000, "Outbound", "Deny", "*", ("*",),
                 destinations=("Internet",)),
    ]  # fmt: skip


def _scaled_vnet(
    ctx: _ScaledContext,
    sub: str,
    sub_index: int,
    vnet_index: int,
    nics: int,
    location: str,
    env: str,
    jump_cidr: str | None,
) -> tuple[str, str]:
    """Add one VNet of a scaled estate with three tier subnets, their NSGs, ASGs, NICs and VMs.

    ``jump_cidr`` is the hub jump host the NSG admin rules admit; ``None`` for the hub itself,
    whose jump host is the third NIC of its app subnet. Returns the VNet id and that CIDR.
    """
    b, rng = ctx.b, ctx.rng
    is_hub = vnet_index == 0
    vnet_name = f"vnet-{sub_index:03d}-{'hub' if is_hub else f'spoke{vnet_index:02d}'}"
    net_rg, wl_rg = f"rg-net-{sub_index:03d}", f"rg-wl-{sub_index:03d}-{vnet_index:02d}"
    b.resource_group(sub, wl_rg, location, {"env": env})
    per_tier = [nics // 3 + (1 if t < nics % 3 else 0) for t in range(3)]
    bits = _host_bits(max(per_tier))
    vnet_block = ctx.allocator.block(32 - bits - 2)
    subnet_blocks = list(vnet_block.subnets(new_prefix=32 - bits))[:3]
    if jump_cidr is None:
        jump_ip = int(subnet_blocks[1].network_address) + SUBNET_RESERVED_LOW + 2
        jump_cidr = f"{ipaddress.IPv4Address(jump_ip)}/32"
    app = rng.choice(_SCALED_APPS)
    base = {"env": env, "owner": f"{app}-team@contoso.example"}
    asgs = {
        name: b.asg(arm_id(sub, net_rg, "asg", f"asg-{vnet_name}-{name}"), location, base)
        for name in (*_SCALED_TIERS, "monitored", "pci")
    }
    subnet_specs = []
    for tier, block in zip(_SCALED_TIERS, subnet_blocks, strict=True):
        rules = _scaled_nsg_rules(tier, asgs, str(subnet_blocks[1]), jump_cidr)
        nsg_id = b.nsg(arm_id(sub, net_rg, "nsg", f"nsg-{vnet_name}-{tier}"), location, base, rules)
        subnet_specs.append(SubnetSpec(tier, (str(block),), nsg_id))
    vnet_id = arm_id(sub, net_rg, "vnet", vnet_name)
    subnet_ids = b.vnet(vnet_id, location, base, [str(vnet_block)], subnet_specs)
    for tier_index, tier in enumerate(_SCALED_TIERS):
        first_ip = int(subnet_blocks[tier_index].network_address) + SUBNET_RESERVED_LOW
        for k in range(per_tier[tier_index]):
            role = _scaled_role(is_hub, tier, k)
            public = tier == "web" and k == 0 and not is_hub
            _scaled_host(
                ctx,
                sub,
                wl_rg,
                location,
                subnet_ids[tier],
                first_ip + k,
                tier,
                app,
                env,
                asgs,
                role,
                public=public,
            )
    return vnet_id, jump_cidr


def _scaled_role(is_hub: bool, tier: str, index: int) -> str | None:
    if not is_hub or tier != "app":
        return None
    return {0: "dns", 1: "dns", 2: "jumphost"}.get(index)


def _scaled_host(
    ctx: _ScaledContext,
    sub: str,
    rg: str,
    location: str,
    subnet_id: str,
    ip: int,
    tier: str,
    app: str,
    env: str,
    asgs: Mapping[str, str],
    role: str | None,
    *,
    public: bool,
) -> None:
    """Add one NIC (and, for most NICs, its VM) with spread tags and ASG memberships."""
    b, rng = ctx.b, ctx.rng
    ctx.nic_counter += 1
    counter = ctx.nic_counter
    name = f"vm-{app}-{tier}-{counter:06d}"
    tags = {
        "app": app if rng.random() < 0.9 else rng.choice(_SCALED_APPS),
        "env": env if rng.random() < 0.95 else "dev",
        "tier": tier,
        "owner": _SCALED_OWNERS[app],
        "cost-center": _SCALED_COST_CENTERS[rng.randrange(len(_SCALED_COST_CENTERS))],
    }
    if role:
        tags["role"] = role
    member_of = [asgs[tier]]
    if rng.random() < 0.3:
        member_of.append(asgs["monitored"])
    if rng.random() < 0.1:
        member_of.append(asgs["pci"])
    nic_id = arm_id(sub, rg, "nic", f"{name}-nic")
    pip_id = None
    if public:
        pip_id = arm_id(sub, rg, "pip", f"{name}-pip")
        address = str(next(ctx.public_ips))
        b.public_ip(pip_id, location, tags, address, f"{nic_id}/ipConfigurations/ipconfig1")
    has_vm = role is not None or rng.random() < 0.9
    vm_id = arm_id(sub, rg, "vm", name) if has_vm else None
    mac = mac_address(counter * _MAC_MULTIPLIER)
    spec = NicSpec(
        f"{name}-nic",
        subnet_id,
        str(ipaddress.IPv4Address(ip)),
        mac,
        tuple(member_of),
        public_ip_id=pip_id,
    )
    b.nic(nic_id, location, tags, spec, vm_id=vm_id)
    if vm_id is not None:
        os: OsType = "Windows" if tier == "web" or rng.random() < 0.3 else "Linux"
        power: PowerState = "deallocated" if rng.random() < 0.03 else "running"
        b.vm(vm_id, location, tags, VmSpec(name, (nic_id,), os, "Standard_D4s_v5", power))


def _random_guid(rng: random.Random) -> str:
    """A version-4 GUID from ``rng`` (about five times faster than going through uuid.UUID)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic dicts.

    The rows hold no reference cycles, yet building a few hundred thousand of them triggers
    repeated full collections that cost more than the building itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def scaled_estate(
    subscriptions: int, vnets_per_subscription: int, nics_per_vnet: int, seed: int = 0
) -> list[Resource]:
    """A generated hub-and-spoke estate of ``subscriptions * vnets * nics`` NICs.

    See :func:`iter_scaled_estate` for the layout; this collects its rows in a list.
    """
    with _gc_paused():
        return list(iter_scaled_estate(subscriptions, vnets_per_subscription, nics_per_vnet, seed))


def iter_scaled_estate(
    subscriptions: int, vnets_per_subscription: int, nics_per_vnet: int, seed: int = 0
) -> Iterator[Resource]:
    """Yield a generated hub-and-spoke estate subscription by subscription.

    Memory stays bounded by one subscription, so benchmarks can stream huge estates to a file.

    Per subscription the first VNet is the hub (two DNS servers and a jump host in its app
    subnet) and the others are spokes peered with it in both directions. Each VNet has web/app/db
    subnets with an NSG each, five ASGs (one per tier, ``monitored`` ~30%, ``pci`` ~10%), tags
    spread over apps, environments and cost centres, VMs for about 90% of the NICs and a public
    IP (from 198.18.0.0/15) on the first web NIC of each spoke. VNets are carved without overlap
    from 10.0.0.0/8, then 100.64.0.0/10, then 172.16.0.0/12; :class:`AddressPlanExhausted` is
    raised when they do not fit. The same arguments always give the same rows, in the same
    order, as :func:`scaled_estate`.
    """
    if min(subscriptions, vnets_per_subscription, nics_per_vnet) < 1:
        raise ValueError("subscriptions, vnets_per_subscription and nics_per_vnet must be >= 1")
    if subscriptions * vnets_per_subscription * nics_per_vnet >= 1 << 24:
        raise ValueError("at most 16,777,215 NICs: MAC suffixes would repeat")
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography
    builder = EstateBuilder(_random_guid(rng), new_guid=lambda _key: _random_guid(rng))
    ctx = _ScaledContext(
        builder,
        rng,
        _Allocator(SCALED_POOLS),
        iter(ipaddress.IPv4Network(SCALED_PUBLIC_POOL).hosts()),
    )
    for sub_index in range(subscriptions):
        sub = _random_guid(rng)
        location = _SCALED_LOCATIONS[sub_index % len(_SCALED_LOCATIONS)]
        env = rng.choices(("prod", "dev", "test"), weights=(7, 2, 1))[0]
        builder.subscription(sub, f"Workload-{sub_index:03d}-{env}", {"env": env})
        builder.resource_group(sub, f"rg-net-{sub_index:03d}", location, {"env": env})
        builder.resource_group(sub, "NetworkWatcherRG", location, {})
        hub_id, jump_cidr = _scaled_vnet(ctx, sub, sub_index, 0, nics_per_vnet, location, env, None)
        for j in range(1, vnets_per_subscription):
            spoke_id, _ = _scaled_vnet(
                ctx, sub, sub_index, j, nics_per_vnet, location, env, jump_cidr
            )
            builder.peer(hub_id, spoke_id, a_is_hub=True)
        yield from builder.drain()
