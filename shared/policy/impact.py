"""Which NSGs a single resource change can affect, without recompiling the policy.

Built once per (policy, inventory) and then updated change by change, the index keeps, for every
NIC IP configuration, the facts selectors look at (VNet, subnet, ASGs, resource groups,
subscription, tags, IP) and the NSGs that enforce it; for every group, how many of its members
sit behind each NSG; and, from the rules, which groups' NSGs carry a group as the far side of a
rule. A change then costs a selector evaluation per group for the members it touches:

* the NSGs in front of the changed members (old and new) are affected: their own rules and the
  posture follow the members;
* if a group gained or lost members (or a member's IP moved), every NSG holding rules whose far
  side is that group is affected too: its prefixes or ASG references change.

Names in selectors are resolved once, against the inventory the index was built from; a
selector naming a VNet or ASG created later resolves at the next full rebuild (the timer).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from shared.domain.arm_id import key
from shared.domain.assets import Nic, Subnet, Vm
from shared.domain.inventory import Inventory
from shared.domain.normalize import normalize
from shared.policy.groups import MemberKey, NameIndex, resolve_policy_groups
from shared.policy.model import (
    BUILTIN_ANY,
    Action,
    AllOf,
    AnyOf,
    AsgSelector,
    CidrSelector,
    EnforcementPoint,
    NotOf,
    OutboundPosture,
    Policy,
    ResourceGroupSelector,
    Selector,
    SubnetSelector,
    SubscriptionSelector,
    TagsSelector,
    VnetSelector,
)

IpAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What selectors and the compiler look at for one NIC IP configuration."""

    member: MemberKey
    ip: IpAddress
    vnet: str
    subnet: str
    subscription: str
    resource_groups: frozenset[str]  # /subscriptions/<s>/resourcegroups/<rg>, lower-case
    tags: Mapping[str, str]  # lower-case names; VM tags over NIC tags
    asgs: frozenset[str]
    nsgs: tuple[str, ...]  # enforcing NSG keys at the policy's enforcement point


@dataclass
class Impact:
    nsgs: set[str] = field(default_factory=set)  # NSG keys to reconcile
    groups: set[str] = field(default_factory=set)  # groups whose membership changed
    members: int = 0  # member facts re-evaluated

    def merge(self, other: Impact) -> None:
        self.nsgs |= other.nsgs
        self.groups |= other.groups
        self.members += other.members


Predicate = Callable[[MemberFacts], bool]

#: The far side that stands for every managed NSG (see ImpactIndex._far_sides).
EVERY_MANAGED = "\x00every managed NSG"


def _has_cidr(selector: Selector) -> bool:
    match selector:
        case CidrSelector():
            return True
        case AllOf(items) | AnyOf(items):
            return any(_has_cidr(item) for item in items)
        case NotOf(item):
            return _has_cidr(item)
    return False


def _estate_wide(name: str) -> bool:
    """A rule side that holds every member (compiler.ESTATE_WIDE: ``any``, ``VirtualNetwork``)."""
    return name in (BUILTIN_ANY, "VirtualNetwork")


class ImpactIndex:
    def __init__(self, policy: Policy, inventory: Inventory) -> None:
        self.policy = policy
        self._names = NameIndex(inventory)
        self.nsg_ids = {key(n.id): n.id for n in inventory.nsgs.values()}  # key -> as spelled
        self._predicates = {g.name: self._compile(g.selector) for g in policy.groups}
        self._asg_groups = {g.name for g in policy.groups if _mentions_asg(g.selector)}
        self._peers = self._far_sides(policy)
        self._ruled = {n for r in policy.rules for n in (r.source, r.destination)}  # ASG users
        self._subnets: dict[str, tuple[str, str | None]] = {}  # subnet -> (vnet, nsg)
        self._vnet_subnets: dict[str, set[str]] = defaultdict(set)
        self._vms: dict[str, Vm] = {}
        self._nics: dict[str, Nic] = {}
        self._vm_nics: dict[str, set[str]] = defaultdict(set)
        self._subnet_nics: dict[str, set[str]] = defaultdict(set)
        self._facts: dict[str, tuple[MemberFacts, ...]] = {}
        self._group_nsgs: dict[str, Counter[str]] = {g.name: Counter() for g in policy.groups}
        self._member_groups: dict[MemberKey, frozenset[str]] = {}
        for subnet in inventory.subnets.values():
            self._put_subnet(subnet)
        for vm in inventory.vms.values():
            self._vms[key(vm.id)] = vm
        for nic in inventory.nics.values():
            self._put_nic(nic)
        groups, _, _ = resolve_policy_groups(policy, inventory)  # the fast, indexed resolver
        by_member = {f.member: f for facts in self._facts.values() for f in facts}
        member_groups: dict[MemberKey, set[str]] = defaultdict(set)
        for name, group in groups.items():
            for location in group.members:
                facts = by_member.get(location.member_key)
                if facts is None:
                    continue
                member_groups[facts.member].add(name)
                self._group_nsgs[name].update(facts.nsgs)
        self._member_groups = {m: frozenset(g) for m, g in member_groups.items()}
        self._asg_groups_held: dict[str, Counter[str]] = defaultdict(Counter)
        for facts in by_member.values():
            for asg in facts.asgs:
                self._asg_groups_held[asg].update(self._member_groups.get(facts.member, ()))

    # -- changes -----------------------------------------------------------------------------

    def apply(self, target_type: str, target_id: str, row: Mapping[str, object] | None,
              ) -> Impact:
        """Account for one re-read resource (``row`` None: it is gone) and say what it affects."""
        handler = {
            "microsoft.network/networkinterfaces": self._nic_changed,
            "microsoft.compute/virtualmachines": self._vm_changed,
            "microsoft.network/virtualnetworks": self._vnet_changed,
            "microsoft.network/networksecuritygroups": self._nsg_changed,
            "microsoft.network/applicationsecuritygroups": self._asg_changed,
        }.get(target_type)
        if handler is None:
            return Impact()
        return handler(key(target_id), row)

    def nsgs_of_group(self, group: str) -> set[str]:
        return {n for n, count in self._group_nsgs.get(group, Counter()).items() if count > 0}

    def _nic_changed(self, nic_key: str, row: Mapping[str, object] | None) -> Impact:
        nic = _parse_one(row, "nics") if row is not None else None
        old = self._facts.get(nic_key, ())
        self._drop_nic(nic_key)
        if isinstance(nic, Nic):
            self._put_nic(nic)
        return self._reevaluate(old, self._facts.get(nic_key, ()))

    def _vm_changed(self, vm_key: str, row: Mapping[str, object] | None) -> Impact:
        vm = _parse_one(row, "vms") if row is not None else None
        if isinstance(vm, Vm):
            self._vms[vm_key] = vm
        else:
            self._vms.pop(vm_key, None)
        return self._refresh_nics(set(self._vm_nics.get(vm_key, ())))

    def _vnet_changed(self, vnet_key: str, row: Mapping[str, object] | None) -> Impact:
        before = set(self._vnet_subnets.get(vnet_key, ()))
        impact = Impact()
        for subnet_key in before:  # NSGs that protected the old subnets lose or keep members
            nsg = self._subnets.get(subnet_key, ("", None))[1]
            if nsg:
                impact.nsgs.add(nsg)
            self._subnets.pop(subnet_key, None)
        self._vnet_subnets.pop(vnet_key, None)
        if row is not None:
            for subnet in normalize([dict(row)]).subnets.values():
                self._put_subnet(subnet)
        nics = {n for s in before | self._vnet_subnets.get(vnet_key, set())
                for n in self._subnet_nics.get(s, ())}
        impact.merge(self._refresh_nics(nics))
        return impact

    def _nsg_changed(self, nsg_key: str, row: Mapping[str, object] | None) -> Impact:
        # rules edited outside zts (drift) or the NSG deleted: reconcile it; its associations
        # arrive as subnet (VNet) or NIC events
        return Impact(nsgs={nsg_key} if row is not None else set())

    def _asg_changed(self, asg_key: str, row: Mapping[str, object] | None) -> Impact:
        del asg_key, row  # membership lives on the NICs; an ASG's own changes move no member
        impact = Impact()
        for group in self._asg_groups:  # but rules may reference it: let their NSGs re-plan
            impact.nsgs |= self._with_far_sides(group)
        return impact

    def _refresh_nics(self, nic_keys: Iterable[str]) -> Impact:
        impact = Impact()
        for nic_key in sorted(nic_keys):
            old = self._facts.get(nic_key, ())
            nic = self._nics.get(nic_key)
            self._drop_nic(nic_key)
            if nic is not None:
                self._put_nic(nic)
            impact.merge(self._reevaluate(old, self._facts.get(nic_key, ())))
        return impact

    def _reevaluate(self, old: tuple[MemberFacts, ...], new: tuple[MemberFacts, ...]) -> Impact:
        impact = Impact(members=len(old) + len(new))
        was: dict[MemberKey, tuple[MemberFacts, frozenset[str]]] = {}
        for facts in old:
            impact.nsgs.update(facts.nsgs)
            groups = self._member_groups.pop(facts.member, frozenset())
            was[facts.member] = (facts, groups)
            for group in groups:
                self._group_nsgs[group].subtract(facts.nsgs)
            for asg in facts.asgs:
                self._asg_groups_held[asg].subtract(groups)
        old_pairs = list(was.values())
        for facts in new:
            impact.nsgs.update(facts.nsgs)
            groups = frozenset(g for g, matches in self._predicates.items() if matches(facts))
            self._member_groups[facts.member] = groups
            for group in groups:
                self._group_nsgs[group].update(facts.nsgs)
            for asg in facts.asgs:
                self._asg_groups_held[asg].update(groups)
            previous, before = was.pop(facts.member, (None, frozenset()))
            impact.groups |= groups ^ before
            if previous is not None and previous.ip != facts.ip:
                impact.groups |= groups  # same groups, new address: their prefixes change
        for _, before in was.values():  # members that are gone
            impact.groups |= before
        # an ASG that gained or lost a member may stop (or start) being an exact stand-in for
        # the groups whose members hold it, wherever the compiler uses it
        # (its members, their VNets and the NSGs in front of them all decide that)
        touched = {a for f, _ in old_pairs if f not in new for a in f.asgs}
        touched |= {a for f in new if f not in old for a in f.asgs}
        stand_ins = {g for asg in touched for g, n in self._asg_groups_held[asg].items()
                     if n > 0 and g in self._ruled}
        for group in impact.groups | stand_ins:
            impact.nsgs |= self._with_far_sides(group)
        return impact

    def _with_far_sides(self, group: str) -> set[str]:
        """The NSGs in front of ``group`` and those holding rules with it as the far side."""
        nsgs = self.nsgs_of_group(group)
        for peer in self._peers.get(group, ()):
            nsgs |= self._managed_nsgs() if peer == EVERY_MANAGED else self.nsgs_of_group(peer)
        return nsgs

    # -- state -------------------------------------------------------------------------------

    def _put_subnet(self, subnet: Subnet) -> None:
        subnet_key, vnet_key = key(subnet.id), key(subnet.vnet_id)
        self._subnets[subnet_key] = (vnet_key, key(subnet.nsg_id) if subnet.nsg_id else None)
        self._vnet_subnets[vnet_key].add(subnet_key)

    def _put_nic(self, nic: Nic) -> None:
        nic_key = key(nic.id)
        self._nics[nic_key] = nic
        vm_key = key(nic.vm_id) if nic.vm_id else ""
        if vm_key:
            self._vm_nics[vm_key].add(nic_key)
        vm = self._vms.get(vm_key)
        tags = {k.lower(): v for k, v in nic.tags}
        if vm is not None:
            tags.update((k.lower(), v) for k, v in vm.tags)
        sub = nic.subscription_id.lower()
        groups = {f"/subscriptions/{sub}/resourcegroups/{rg}".lower()
                  for rg in (nic.resource_group, vm.resource_group if vm else "") if rg}
        facts = []
        for config in nic.ip_configurations:
            if config.private_ip is None or not config.subnet_id:
                continue
            subnet_key = key(config.subnet_id)
            self._subnet_nics[subnet_key].add(nic_key)
            vnet_key, subnet_nsg = self._subnets.get(subnet_key, ("", None))
            facts.append(MemberFacts(
                member=(nic_key, config.name.lower()), ip=config.private_ip, vnet=vnet_key,
                subnet=subnet_key, subscription=sub, resource_groups=frozenset(groups),
                tags=tags, asgs=frozenset(key(a) for a in config.asg_ids),
                nsgs=self._enforcing(subnet_nsg, key(nic.nsg_id) if nic.nsg_id else None)))
        self._facts[nic_key] = tuple(facts)

    def _drop_nic(self, nic_key: str) -> None:
        nic = self._nics.pop(nic_key, None)
        self._facts.pop(nic_key, None)
        if nic is None:
            return
        if nic.vm_id:
            self._vm_nics.get(key(nic.vm_id), set()).discard(nic_key)
        for config in nic.ip_configurations:
            if config.subnet_id:
                self._subnet_nics.get(key(config.subnet_id), set()).discard(nic_key)

    def _enforcing(self, subnet_nsg: str | None, nic_nsg: str | None) -> tuple[str, ...]:
        point = self.policy.enforcement
        found: list[str] = []
        if point in (EnforcementPoint.SUBNET, EnforcementPoint.BOTH) and subnet_nsg:
            found.append(subnet_nsg)
        if point in (EnforcementPoint.NIC, EnforcementPoint.BOTH) and nic_nsg:
            found.append(nic_nsg)
        return tuple(found)

    # -- policy shape ------------------------------------------------------------------------

    def _far_sides(self, policy: Policy) -> dict[str, set[str]]:
        """group -> groups whose NSGs hold rules naming this group as the far side (as the
        compiler emits them: inbound on the destination's NSGs; outbound on the source's NSGs
        under an outbound default-deny posture, or when a deny reaching outside the estate
        makes the sources' NSGs hold the rules before it outbound). :data:`EVERY_MANAGED`
        stands for every managed NSG: a rule to ``any`` or ``VirtualNetwork`` is on all of
        them (and one from them, when outbound rules are)."""
        names = {g.name for g in policy.groups}
        external = {g.name for g in policy.groups if _has_cidr(g.selector)}
        # an over-approximation of the compiler's choice (it depends on members): an NSG
        # marked affected that is not costs a recompile, one missed would keep stale rules
        outbound = policy.posture.outbound is OutboundPosture.DEFAULT_DENY or any(
            rule.action is Action.DENY
            and (rule.destination not in names or rule.destination in external)
            for rule in policy.rules)
        peers: dict[str, set[str]] = defaultdict(set)
        for rule in policy.rules:
            if rule.source in names and rule.destination in names:
                peers[rule.source].add(rule.destination)
                if outbound:
                    peers[rule.destination].add(rule.source)
            elif rule.source in names and _estate_wide(rule.destination):
                peers[rule.source].add(EVERY_MANAGED)
            elif outbound and rule.destination in names and _estate_wide(rule.source):
                peers[rule.destination].add(EVERY_MANAGED)
        return peers

    def _managed_nsgs(self) -> set[str]:
        return {n for counts in self._group_nsgs.values() for n, c in counts.items() if c > 0}

    def _compile(self, selector: Selector) -> Predicate:  # noqa: PLR0911 - one per kind
        match selector:
            case VnetSelector(ref):
                return self._equals("vnet", ref, lambda f: f.vnet)
            case SubnetSelector(ref):
                return self._equals("subnet", ref, lambda f: f.subnet)
            case SubscriptionSelector(ref):
                return self._equals("subscription", ref, lambda f: f.subscription)
            case AsgSelector(ref):
                wanted = self._resolve("asg", ref)
                return (lambda f: wanted in f.asgs) if wanted else _never
            case ResourceGroupSelector(ref):
                wanted = self._resolve("rg", ref)
                return (lambda f: wanted in f.resource_groups) if wanted else _never
            case TagsSelector(tags):
                pairs = tuple((name.lower(), value) for name, value in tags)
                return lambda f: all(
                    (n in f.tags) if v == "*" else f.tags.get(n) == v for n, v in pairs)
            case CidrSelector(prefixes):
                return lambda f: any(f.ip in p for p in prefixes)
            case AllOf(items):
                parts = [self._compile(i) for i in items]
                return lambda f: bool(parts) and all(p(f) for p in parts)
            case AnyOf(items):
                parts = [self._compile(i) for i in items]
                return lambda f: any(p(f) for p in parts)
            case NotOf(item):
                inner = self._compile(item)
                return lambda f: not inner(f)
        raise TypeError(f"unknown selector {selector!r}")  # pragma: no cover - exhaustive

    def _equals(self, kind: str, ref: str, field_of: Callable[[MemberFacts], str]) -> Predicate:
        wanted = self._resolve(kind, ref)
        return (lambda f: field_of(f) == wanted) if wanted else _never

    def _resolve(self, kind: str, ref: str) -> str:
        try:
            return self._names.resolve(kind, ref)
        except ValueError:
            return ""  # unresolvable: the full compile reports it; nothing matches here


def _never(facts: MemberFacts) -> bool:
    del facts
    return False


def _mentions_asg(selector: Selector) -> bool:
    match selector:
        case AsgSelector():
            return True
        case AllOf(items) | AnyOf(items):
            return any(_mentions_asg(i) for i in items)
        case NotOf(item):
            return _mentions_asg(item)
    return False


def _parse_one(row: Mapping[str, object], kind: str) -> object | None:
    inventory = normalize([dict(row)])
    found = getattr(inventory, kind)
    return next(iter(found.values()), None)
