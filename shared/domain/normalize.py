"""Raw ARM resources -> :class:`Inventory`.

The normalizer never crashes on bad input and never drops a row silently: every row ends up as
assets, as a :class:`Skipped` entry naming the field at fault, or as a count of an unknown type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from shared.domain import arm_id
from shared.domain.arm_id import InvalidArmId, key
from shared.domain.assets import (
    Asg,
    Dangling,
    LoadReport,
    Nic,
    Nsg,
    PrivateEndpoint,
    PublicIp,
    ResourceGroup,
    Skipped,
    Subnet,
    Subscription,
    Vm,
    VNet,
)
from shared.domain.inventory import Inventory
from shared.domain.parsers import PARSERS, Asset, common
from shared.domain.raw import FieldError, RawObject

SUBNET_TYPE = "microsoft.network/virtualnetworks/subnets"


class SnapshotError(ValueError):
    """The snapshot document as a whole is unusable (not a list of resources)."""


def rows_from_document(document: Any) -> list[Any]:
    """The resource rows of a snapshot document.

    Accepts a JSON array, ``{"data": [...]}`` (``az graph query``) and ``{"value": [...]}`` (ARM
    list responses).
    """
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping):
        for field in ("data", "value"):
            rows = document.get(field)
            if isinstance(rows, list):
                return rows
        raise SnapshotError(
            'snapshot object must have a "data" (az graph query) or "value" (ARM list) array'
        )
    raise SnapshotError(f"snapshot must be a JSON array or object, got {type(document).__name__}")


# ARM's own spelling of a type -> the Resource Graph spelling the parsers are registered under
TYPE_ALIASES = {
    "microsoft.resources/resourcegroups": "microsoft.resources/subscriptions/resourcegroups",
}


def type_of(row: Mapping[str, Any], resource_id: str) -> str:
    """The lower-cased ARM type of a row; rows without ``type`` (ARM subscription listings) get it
    from their id. ARM calls resource groups ``Microsoft.Resources/resourceGroups`` where
    Resource Graph says ``microsoft.resources/subscriptions/resourcegroups``: both are read."""
    declared = row.get("type")
    if isinstance(declared, str) and declared:
        lowered = declared.lower()
        return TYPE_ALIASES.get(lowered, lowered)
    return arm_id.parse(resource_id).full_type


class _Collector:
    def __init__(self) -> None:
        self.by_row: dict[str, tuple[str, list[Asset]]] = {}
        self.skipped: list[Skipped] = []
        self.unknown: Counter[str] = Counter()
        self.duplicates = 0
        self.total = 0

    def add(self, index: int, row: Any) -> None:
        self.total += 1
        if not isinstance(row, Mapping):
            self.skipped.append(Skipped(f"<row {index}>", "", "(row)", "must be a JSON object"))
            return
        resource_id = row.get("id")
        declared = row.get("type") if isinstance(row.get("type"), str) else ""
        if not isinstance(resource_id, str) or not resource_id.strip():
            self.skipped.append(Skipped(f"<row {index}>", str(declared), "id", "is required"))
            return
        try:
            resource_type = type_of(row, resource_id)
        except InvalidArmId as error:
            self.skipped.append(Skipped(resource_id, str(declared), "id", str(error)))
            return
        parser = PARSERS.get(resource_type)
        if parser is None:
            self.unknown[resource_type] += 1
            return
        raw = RawObject(row)
        try:
            assets = list(parser(common(raw, resource_id), raw))
        except FieldError as error:
            self.skipped.append(Skipped(resource_id, resource_type, error.field, error.reason))
            return
        except InvalidArmId as error:
            self.skipped.append(Skipped(resource_id, resource_type, "id", str(error)))
            return
        row_key = key(resource_id)
        if row_key in self.by_row:
            self.duplicates += 1
            del self.by_row[row_key]  # the later copy wins and takes the later position
        self.by_row[row_key] = (resource_type, assets)


def normalize(rows: Iterable[Any]) -> Inventory:
    """Build an :class:`Inventory` from raw ARM rows (any of the shapes :mod:`raw` accepts)."""
    collector = _Collector()
    for index, row in enumerate(rows):
        collector.add(index, row)
    embedded: list[Subnet] = []
    standalone: list[Subnet] = []
    others: list[Asset] = []
    for resource_type, assets in collector.by_row.values():
        for asset in assets:
            if isinstance(asset, Subnet):
                (standalone if resource_type == SUBNET_TYPE else embedded).append(asset)
            else:
                others.append(asset)
    subnets = {key(s.id): s for s in embedded}
    subnets.update((key(s.id), s) for s in standalone)  # a subnet's own row is the fresher read
    inventory = Inventory(
        subscriptions=_implied_subscriptions(others, collector),
        resource_groups=[a for a in others if isinstance(a, ResourceGroup)],
        vnets=[a for a in others if isinstance(a, VNet)],
        subnets=subnets.values(),
        nics=[a for a in others if isinstance(a, Nic)],
        asgs=[a for a in others if isinstance(a, Asg)],
        nsgs=[a for a in others if isinstance(a, Nsg)],
        vms=[a for a in others if isinstance(a, Vm)],
        private_endpoints=[a for a in others if isinstance(a, PrivateEndpoint)],
        public_ips=[a for a in others if isinstance(a, PublicIp)],
    )
    inventory.report = LoadReport(
        skipped=tuple(collector.skipped),
        unknown_types=tuple(sorted(collector.unknown.items())),
        dangling=tuple(find_dangling(inventory)),
        duplicates=collector.duplicates,
        total_rows=collector.total,
    )
    return inventory


def _implied_subscriptions(assets: list[Asset], collector: _Collector) -> list[Subscription]:
    """Listed subscriptions, plus one (without a display name) for every subscription a loaded
    resource lives in, so counts and lookups cover the whole estate."""
    listed = {a.subscription_id: a for a in assets if isinstance(a, Subscription)}
    for _type, row_assets in collector.by_row.values():
        for asset in row_assets:
            sub = asset.subscription_id
            if sub not in listed:
                listed[sub] = Subscription(id=f"/subscriptions/{sub}", subscription_id=sub,
                                           display_name=None)
    return sorted(listed.values(), key=lambda s: s.subscription_id)


def find_dangling(inventory: Inventory) -> list[Dangling]:
    """References to resources the snapshot does not hold (a partial export, or a race)."""
    found: list[Dangling] = []

    def check(owner: str, field: str, target: str | None, table: Mapping[str, object]) -> None:
        if target and key(target) not in table:
            found.append(Dangling(owner, field, target))

    for nic in inventory.nics.values():
        check(nic.id, "networkSecurityGroup", nic.nsg_id, inventory.nsgs)
        check(nic.id, "virtualMachine", nic.vm_id, inventory.vms)
        for config in nic.ip_configurations:
            check(nic.id, f"ipConfigurations[{config.name}].subnet", config.subnet_id,
                  inventory.subnets)
            for asg in config.asg_ids:
                check(nic.id, f"ipConfigurations[{config.name}].applicationSecurityGroups", asg,
                      inventory.asgs)
    for subnet in inventory.subnets.values():
        check(subnet.id, "networkSecurityGroup", subnet.nsg_id, inventory.nsgs)
    for vm in inventory.vms.values():
        for nic_id in vm.nic_ids:
            check(vm.id, "networkProfile.networkInterfaces", nic_id, inventory.nics)
    for endpoint in inventory.private_endpoints.values():
        check(endpoint.id, "subnet", endpoint.subnet_id, inventory.subnets)
    return sorted(found, key=lambda d: (key(d.resource_id), d.field, key(d.target_id)))
