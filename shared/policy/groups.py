"""Resolve policy groups against an inventory: selectors -> member IP configurations.

A *member* is one IP configuration of a NIC (an :class:`IpLocation`), because that is what an ASG
or an address prefix in an NSG rule refers to. Resolution is explainable: every group lists its
IPs and NICs (``zts groups``), and every reference that does not resolve, or resolves to more than
one resource, is an error naming the candidates — never a silent empty group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import collapse_addresses, ip_network

from shared.domain.arm_id import key
from shared.domain.assets import IpNetwork
from shared.domain.inventory import Inventory, IpLocation
from shared.policy.model import (
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    Group,
    NotOf,
    Policy,
    ResourceGroupSelector,
    Selector,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)

MemberKey = tuple[str, str]  # (NIC key, IP configuration name)


def member_key(location: IpLocation) -> MemberKey:
    return key(location.nic.id), location.ip_configuration.name.lower()


@dataclass(frozen=True, slots=True)
class ResolvedGroup:
    name: str
    members: tuple[IpLocation, ...]  # sorted by IP, then NIC id
    external: tuple[IpNetwork, ...] = ()  # cidr ranges outside the estate

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(str(m.ip) for m in self.members)

    @property
    def nic_ids(self) -> tuple[str, ...]:
        return tuple(sorted({m.nic.id for m in self.members}, key=key))

    def prefixes(self) -> tuple[IpNetwork, ...]:
        """The smallest exact CIDR cover of the members plus the external ranges: never wider
        than what the group holds."""
        hosts = [ip_network(m.ip) for m in self.members]
        return _collapse([*hosts, *self.external])


def _collapse(networks: Iterable[IpNetwork]) -> tuple[IpNetwork, ...]:
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return (*collapse_addresses(v4), *collapse_addresses(v6))


@dataclass(frozen=True, slots=True)
class ResolutionIssue:
    group: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}group {self.group!r}: {self.message}"


@dataclass
class _Index:
    """Name -> candidate ids for each kind a selector can name, built once per inventory."""

    inventory: Inventory
    by_name: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        inv = self.inventory
        names: dict[str, defaultdict[str, list[str]]] = {
            kind: defaultdict(list) for kind in ("vnet", "subnet", "asg", "rg", "subscription")
        }
        for vnet in inv.vnets.values():
            names["vnet"][vnet.name.lower()].append(key(vnet.id))
        for subnet in inv.subnets.values():
            parent = inv.vnets.get(key(subnet.vnet_id))
            if parent is not None:
                names["subnet"][f"{parent.name}/{subnet.name}".lower()].append(key(subnet.id))
        for asg in inv.asgs.values():
            names["asg"][asg.name.lower()].append(key(asg.id))
        for nic in inv.nics.values():  # resource groups that hold members, even if not listed
            for rg in {nic.resource_group, *(_vm_rg(inv, nic.vm_id),)} - {""}:
                rg_id = f"/subscriptions/{nic.subscription_id}/resourcegroups/{rg}".lower()
                for alias in (rg.lower(), f"{nic.subscription_id}/{rg}".lower()):
                    if rg_id not in names["rg"][alias]:
                        names["rg"][alias].append(rg_id)
        for sub in inv.subscriptions.values():
            names["subscription"][sub.subscription_id].append(sub.subscription_id)
            if sub.display_name:
                names["subscription"][sub.display_name.lower()].append(sub.subscription_id)
        self.by_name = {kind: dict(found) for kind, found in names.items()}

    def resolve(self, kind: str, ref: str) -> str:
        """The lower-cased id (or subscription GUID) ``ref`` names; raises ValueError naming
        the candidates when it is unknown or ambiguous."""
        wanted = ref.strip().lower()
        if wanted.startswith("/subscriptions/") and kind != "subscription":
            return key(wanted)
        if kind == "subscription" and wanted.startswith("/subscriptions/"):
            wanted = wanted.split("/")[2]
        found = sorted(set(self.by_name[kind].get(wanted, [])))
        if not found:
            raise ValueError(f"{kind} {ref!r} matches nothing in the inventory")
        if len(found) > 1:
            raise ValueError(f"{kind} {ref!r} is ambiguous; use one of: {', '.join(found)}")
        return found[0]


def _vm_rg(inventory: Inventory, vm_id: str | None) -> str:
    vm = inventory.vms.get(key(vm_id)) if vm_id else None
    return vm.resource_group if vm else ""


class GroupResolver:
    """Resolves selectors for one inventory; reuse it for every group of a policy."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._index = _Index(inventory)
        self._all: dict[MemberKey, IpLocation] = {}
        for nic in inventory.nics.values():
            for config in nic.ip_configurations:
                for location in inventory.locate_ip(config.private_ip) if config.private_ip else ():
                    if location.nic is nic and location.ip_configuration is config:
                        self._all[member_key(location)] = location

    def resolve(self, group: Group) -> ResolvedGroup:
        """Members of one group; raises ValueError with the reason for unresolvable refs."""
        members = self._select(group.selector)
        ordered = sorted((self._all[m] for m in members),
                         key=lambda m: (m.ip.version, m.ip, key(m.nic.id)))
        return ResolvedGroup(group.name, tuple(ordered), _external(group.selector))

    def _select(self, selector: Selector) -> set[MemberKey]:  # noqa: PLR0911 - one per kind
        inv = self.inventory
        match selector:
            case VnetSelector(ref):
                vnet = self._index.resolve("vnet", ref)
                return self._where(lambda m: m.vnet is not None and key(m.vnet.id) == vnet)
            case SubnetSelector(ref):
                subnet = self._index.resolve("subnet", ref)
                return self._where(lambda m: m.subnet is not None and key(m.subnet.id) == subnet)
            case AsgSelector(ref):
                return {member_key(m) for m in inv.asg_members(self._index.resolve("asg", ref))}
            case ResourceGroupSelector(ref):
                rg = self._index.resolve("rg", ref)
                return self._where(lambda m: rg in _member_rgs(inv, m))
            case SubscriptionSelector(ref):
                sub = self._index.resolve("subscription", ref)
                return self._where(lambda m: m.subscription_id == sub)
            case TagsSelector(tags):
                return self._where(lambda m: _tags_match(_member_tags(inv, m), tags))
            case CidrSelector(prefixes):
                return self._where(lambda m: any(m.ip in p for p in prefixes))
            case AllOf(items):
                sets = [self._select(i) for i in items]
                return set.intersection(*sets) if sets else set()
            case AnyOf(items):
                return set().union(*(self._select(i) for i in items))
            case NotOf(item):
                return set(self._all) - self._select(item)
        raise TypeError(f"unknown selector {selector!r}")  # pragma: no cover - exhaustive

    def _where(self, predicate: Callable[[IpLocation], bool]) -> set[MemberKey]:
        return {k for k, m in self._all.items() if predicate(m)}


def _member_rgs(inventory: Inventory, member: IpLocation) -> set[str]:
    rgs = {member.nic.resource_group, _vm_rg(inventory, member.nic.vm_id)} - {""}
    return {f"/subscriptions/{member.subscription_id}/resourcegroups/{rg}".lower() for rg in rgs}


def _member_tags(inventory: Inventory, member: IpLocation) -> dict[str, str]:
    """NIC tags overlaid with the VM's (workload tags usually live on the VM). Tag names are
    case-insensitive in Azure; values are not."""
    tags = {k.lower(): v for k, v in member.nic.tags}
    vm = inventory.vm_of(member.nic)
    if vm is not None:
        tags.update((k.lower(), v) for k, v in vm.tags)
    return tags


def _tags_match(tags: Mapping[str, str], wanted: tuple[tuple[str, str], ...]) -> bool:
    return all(
        k.lower() in tags and (v == "*" or tags[k.lower()] == v) for k, v in wanted
    )


def _external(selector: Selector) -> tuple[IpNetwork, ...]:
    """External ranges a group stands for: its top-level cidr selectors (alone or in ``any``).
    Inside ``all``/``not`` a cidr only narrows estate members."""
    match selector:
        case CidrSelector(prefixes):
            return _collapse(prefixes)
        case AnyOf(items):
            return _collapse(p for item in items for p in _external(item))
    return ()


def resolve_policy_groups(
    policy: Policy, inventory: Inventory,
) -> tuple[dict[str, ResolvedGroup], list[ResolutionIssue], list[ResolutionIssue]]:
    """Every group of the policy: (resolved by name, errors, warnings). A group that matches
    nothing is a warning; an unresolvable reference is an error."""
    resolver = GroupResolver(inventory)
    resolved: dict[str, ResolvedGroup] = {}
    errors: list[ResolutionIssue] = []
    warnings: list[ResolutionIssue] = []
    for group in policy.groups:
        try:
            found = resolver.resolve(group)
        except ValueError as error:
            errors.append(ResolutionIssue(group.name, str(error), group.line))
            continue
        if not found.members and not found.external:
            warnings.append(ResolutionIssue(group.name, "matches nothing", group.line))
        resolved[group.name] = found
    return resolved, errors, warnings
