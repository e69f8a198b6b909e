"""Compile a policy against an inventory into the zts-owned rules each NSG must hold.

* Inbound rules go on the NSGs that protect destination members, at the enforcement point the
  policy chooses (subnet, NIC or both); outbound rules on the NSGs of source members when the
  outbound posture is default-deny. Under an outbound ``allow`` posture, a deny towards
  addresses outside the estate's members (internet, any, a service tag, cidr ranges) can only be
  stopped on the way out: the sources' NSGs then hold it outbound, with every policy rule
  before it that their members can match, in policy order.
* A side of a rule is an ASG reference when Azure allows it and it is exact: the ASG lives in the
  VNet of the protected NICs and, seen from this NSG, holds exactly the group's members. Otherwise
  it is the smallest exact CIDR cover of the members (never a wider range).
* The posture (default deny) applies to every NSG protecting a member of any group the policy
  defines: naming workloads in a group puts them under the policy, even before a rule uses it.
* Priorities follow policy order inside zts's band, with gaps; posture rules (AzureLoadBalancer
  probes, deny-all) close the band. Names and priorities depend only on the inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from shared.domain.arm_id import key
from shared.domain.assets import Access, Direction
from shared.domain.inventory import Inventory, IpLocation
from shared.policy.gc_pause import gc_paused
from shared.policy.groups import (
    MemberKey,
    ResolutionIssue,
    ResolvedGroup,
    cover_text,
    member_key,
    resolve_policy_groups,
)
from shared.policy.model import (
    ALL_PORTS,
    BUILTIN_ANY,
    BUILTIN_INTERNET,
    Action,
    EnforcementPoint,
    InboundPosture,
    OutboundPosture,
    Policy,
    Rule,
)
from shared.policy.nsg_target import (
    MAX_ASGS_PER_RULE_SIDE,
    MAX_PREFIXES_PER_NSG_SIDE,
    MAX_RULES_PER_NSG,
    PRIORITY_STEP,
    PROTOCOL_TO_ARM,
    DesiredRule,
    description,
    rule_name,
)


@dataclass(frozen=True, slots=True)
class Issue:
    message: str
    nsg_id: str | None = None
    rule: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"message": self.message}
        if self.nsg_id:
            out["nsg"] = self.nsg_id
        if self.rule:
            out["rule"] = self.rule
        return out


@dataclass
class Compiled:
    """Desired zts-owned rules per NSG (key -> rules), plus what the compiler noticed."""

    rules: dict[str, list[DesiredRule]] = field(default_factory=dict)
    nsg_ids: dict[str, str] = field(default_factory=dict)  # key -> id in original casing
    groups: dict[str, ResolvedGroup] = field(default_factory=dict)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    #: NSGs whose rules could not be compiled (key -> reasons): their plan fails whole, nothing
    #: of it is written (an empty rule list would otherwise read as "remove every owned rule")
    failed: dict[str, list[str]] = field(default_factory=dict)
    #: selectors that name what the inventory does not hold (or holds twice): invalid input
    unresolved: list[ResolutionIssue] = field(default_factory=list)
    resolution_warnings: list[ResolutionIssue] = field(default_factory=list)
    #: False when the groups did not resolve and nothing was compiled: no NSG may be planned
    #: from it (an empty rule list would read as "remove every owned rule" everywhere)
    complete: bool = False


# DesiredRule's fields without the priority, as a plain tuple: 230k of them are built at 100k
# NICs, and a frozen dataclass costs twice as much to build; each becomes one DesiredRule once
# its priority is known.
_Draft = tuple[str, Direction, Access, str, tuple[str, ...], tuple[str, ...], tuple[str, ...],
               tuple[str, ...], tuple[str, ...], str, str]
_SOURCE_PREFIXES: Final = 4
_DESTINATION_PREFIXES: Final = 6
_PORTS: Final = 8
_POLICY_RULE: Final = 10
# name, direction, access, protocol, ports, description, policy rule: the same on every NSG
_Template = tuple[str, Direction, Access, str, tuple[str, ...], str, str]


@dataclass(frozen=True, slots=True)
class _Peer:
    """The far side of a rule as seen from one NSG: a group, or a literal address token."""

    group: ResolvedGroup | None
    token: str | None  # "Internet", "*", a service tag


#: Address tokens that hold every member of the estate (a rule to or from them reaches them all).
ESTATE_WIDE: Final = frozenset({"*", "VirtualNetwork"})


class Compiler:
    def __init__(self, policy: Policy, inventory: Inventory) -> None:
        self.policy = policy
        self.inventory = inventory
        self.out = Compiled()
        self._vnet_of_scope: dict[str, set[str]] = defaultdict(set)
        self._asg_sizes: dict[str, int] = {}  # ASG key -> members
        self._asg_in_scope: dict[tuple[str, str], int] = {}  # (ASG, NSG) -> members behind it
        self._asg_vnets: dict[str, set[str]] = {}
        self._member_asgs: dict[MemberKey, frozenset[str]] = {}
        self._prefix_cache: dict[str, tuple[str, ...]] = {}
        self._peer_asgs: dict[str, tuple[str, ...]] = {}  # group -> ASGs holding exactly it
        self._enforcing_cache: dict[MemberKey, list[str]] = {}
        self._grouped: dict[str, tuple[dict[str, list[IpLocation]], list[str]]] = {}
        self._sides: dict[tuple[str, str, bool], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._scoped_unions: dict[tuple[str, str], tuple[str, ...] | None] = {}
        self._last_deny_out: dict[str, int] = {}  # NSG -> last outbound deny (allow posture)
        self._peer_unions: dict[str, tuple[set[str], tuple[str, ...] | None]] = {}

    # -- public -------------------------------------------------------------------------------

    def compile(self) -> Compiled:
        groups, errors, warnings = resolve_policy_groups(self.policy, self.inventory)
        self.out.groups = groups
        self.out.unresolved, self.out.resolution_warnings = list(errors), list(warnings)
        self.out.errors.extend(Issue(str(e)) for e in errors)
        self.out.warnings.extend(Issue(str(w)) for w in warnings)
        if errors:
            return self.out
        self._index_scopes()
        inbound: dict[str, list[tuple[Rule, _Draft]]] = defaultdict(list)
        outbound: dict[str, list[tuple[Rule, _Draft]]] = defaultdict(list)
        managed: set[str] = set()  # every NSG protecting a member of any group gets the posture
        for group in groups.values():
            managed.update(self._by_nsg(group, None))
        ordered = sorted(self.policy.rules, key=lambda r: (r.priority, r.name))
        self._last_deny_out = self._outbound_denies(ordered, managed)
        for at, rule in enumerate(ordered):
            self._emit(at, rule, managed, inbound, outbound)
        for nsg in sorted(managed | set(inbound) | set(outbound)):
            self.out.rules[nsg] = (self._number(nsg, Direction.INBOUND, inbound.get(nsg, []))
                                   + self._number(nsg, Direction.OUTBOUND, outbound.get(nsg, [])))
        self.out.complete = True
        return self.out

    def _outbound_denies(self, ordered: list[Rule], managed: set[str]) -> dict[str, int]:
        """Under an outbound ``allow`` posture: each NSG that must hold an outbound deny (a
        deny whose destination reaches beyond the estate's members, which no inbound rule can
        stop) -> the position of the last such rule. Such an NSG's outbound side then holds
        every policy rule from its members up to that deny, in policy order: alone, the deny
        would overtake the allows before it (``allow web -> internet 443`` then ``deny web ->
        any`` blocked 443), since allows need no outbound rule of their own."""
        last: dict[str, int] = {}
        if self.policy.posture.outbound is OutboundPosture.DEFAULT_DENY:
            return last
        for at, rule in enumerate(ordered):
            src, dst = self._peer(rule.source), self._peer(rule.destination)
            if rule.action is not Action.DENY or not self._reaches_outside(dst) \
                    or self._empty(src) or self._empty(dst):
                continue
            if src.group is not None and src.group.members:
                nsgs: Iterable[str] = self._by_nsg(src.group, None)
            elif src.group is None and src.token in ESTATE_WIDE:
                nsgs = managed
            else:
                continue
            last.update(dict.fromkeys(nsgs, at))
        return last

    @staticmethod
    def _reaches_outside(dst: _Peer) -> bool:
        """A destination holding addresses outside the estate's members (a token: internet,
        any, a service tag; or a group with cidr ranges)."""
        return dst.group is None or bool(dst.group.external)

    @staticmethod
    def _empty(peer: _Peer) -> bool:
        return peer.group is not None and not (peer.group.members or peer.group.external)

    def _outbound_here(self, at: int, nsgs: Iterable[str]) -> list[str]:
        """The NSGs among ``nsgs`` whose outbound side holds the rule at position ``at``."""
        if self.policy.posture.outbound is OutboundPosture.DEFAULT_DENY:
            return list(nsgs)
        last = self._last_deny_out
        return [nsg for nsg in nsgs if last.get(nsg, -1) >= at]

    def _emit(self, at: int, rule: Rule, managed: set[str],
              inbound: dict[str, list[tuple[Rule, _Draft]]],
              outbound: dict[str, list[tuple[Rule, _Draft]]]) -> None:
        """One policy rule's NSG rules, on every NSG that must hold them."""
        src, dst = self._peer(rule.source), self._peer(rule.destination)
        if self._empty(src) or self._empty(dst):
            return  # an empty group allows nothing; resolution already warned
        if dst.group is not None and dst.group.members:
            template = self._template(rule, Direction.INBOUND)
            for nsg, behind in self._by_nsg(dst.group, rule).items():
                inbound[nsg].append((rule, self._draft(template, nsg,
                                                       (dst.group.name, behind), src)))
        if src.group is not None and src.group.members:
            # members no NSG protects matter on this side only where it is the rule's one
            # enforcement: under an outbound default-deny, or for a deny reaching outside
            own = self.policy.posture.outbound is OutboundPosture.DEFAULT_DENY or (
                rule.action is Action.DENY and self._reaches_outside(dst))
            by_nsg = self._by_nsg(src.group, rule if own else None)
            here = self._outbound_here(at, by_nsg)
            if here:
                template = self._template(rule, Direction.OUTBOUND)
                for nsg in here:
                    outbound[nsg].append((rule, self._draft(template, nsg,
                                                            (src.group.name, by_nsg[nsg]), dst)))
        # ``any`` and ``VirtualNetwork`` hold every member: as a destination the rule goes
        # on every managed NSG (each deny-all must let it through), and as a source on every
        # managed NSG's outbound side that holds rules (all under an outbound default-deny)
        if dst.group is None and dst.token in ESTATE_WIDE:
            template = self._template(rule, Direction.INBOUND)
            for nsg in sorted(managed):
                inbound[nsg].append((rule, self._wide_draft(template, nsg, dst.token, src)))
        if src.group is None and src.token in ESTATE_WIDE:
            here = self._outbound_here(at, sorted(managed))
            if here:
                template = self._template(rule, Direction.OUTBOUND)
                for nsg in here:
                    outbound[nsg].append((rule, self._wide_draft(template, nsg, src.token, dst)))

    # -- enforcement points ------------------------------------------------------------------

    def _index_scopes(self) -> None:
        """Each member's enforcing NSGs, the VNets behind each NSG and the VNets of each ASG's
        members. Members sharing a subnet share most of this, so each distinct (VNet, NSGs,
        ASGs) combination is worked out once."""
        inv = self.inventory
        vnet_keys = {vnet_id: key(vnet_id) for vnet_id in (v.id for v in inv.vnets.values())}
        nsgs_at: dict[tuple[str | None, str | None], list[str]] = {}
        seen: set[tuple[str, tuple[str, ...], tuple[str, ...]]] = set()
        for where in inv.ip_locations():
            subnet_nsg = where.subnet.nsg_id if where.subnet is not None else None
            nsgs = nsgs_at.get((subnet_nsg, where.nic.nsg_id))
            if nsgs is None:
                nsgs = nsgs_at[subnet_nsg, where.nic.nsg_id] = self._enforcing_uncached(where)
            nsgs = self._enforcing_cache.setdefault(where.member_key, nsgs)
            vnet = vnet_keys.get(where.vnet.id, "") if where.vnet is not None else ""
            seen.add((vnet, tuple(nsgs), where.ip_configuration.asg_ids))
        for vnet, scope_nsgs, asgs in seen:
            self._index_place(vnet, scope_nsgs, asgs)
        self._index_asg_members()
        for found in inv.nsgs.values():
            self.out.nsg_ids[key(found.id)] = found.id

    def _index_place(self, vnet: str, nsgs: tuple[str, ...], asgs: tuple[str, ...]) -> None:
        for nsg in nsgs:
            if vnet:
                self._vnet_of_scope[nsg].add(vnet)
        for asg in asgs:
            self._asg_vnets.setdefault(key(asg), set()).add(vnet)

    def _index_asg_members(self) -> None:
        """Each member's ASGs, and how many members of each ASG sit behind each NSG: an ASG
        that holds all of a group's members behind an NSG is exact there when the counts match."""
        member_asgs: dict[MemberKey, set[str]] = defaultdict(set)
        in_scope: dict[tuple[str, str], int] = defaultdict(int)
        for asg in self.inventory.asgs:
            held = {member_key(m) for m in self.inventory.asg_members(asg)}
            self._asg_sizes[asg] = len(held)
            for member in held:
                member_asgs[member].add(asg)
                for nsg in self._enforcing_cache.get(member, ()):
                    in_scope[asg, nsg] += 1
        self._member_asgs = {member: frozenset(asgs) for member, asgs in member_asgs.items()}
        self._asg_in_scope = dict(in_scope)

    def _enforcing(self, member: IpLocation) -> list[str]:
        found = self._enforcing_cache.get(member.member_key)
        if found is None:
            found = self._enforcing_cache[member.member_key] = self._enforcing_uncached(member)
        return found

    def _enforcing_uncached(self, member: IpLocation) -> list[str]:
        point = self.policy.enforcement
        found: list[str] = []
        if point in (EnforcementPoint.SUBNET, EnforcementPoint.BOTH) and member.subnet \
                and member.subnet.nsg_id:
            found.append(key(member.subnet.nsg_id))
        if point in (EnforcementPoint.NIC, EnforcementPoint.BOTH) and member.nic.nsg_id:
            found.append(key(member.nic.nsg_id))
        return found

    def _by_nsg(self, group: ResolvedGroup, rule: Rule | None) -> dict[str, list[IpLocation]]:
        """A group's members per enforcing NSG (computed once per group); warns, per rule,
        about members no NSG protects at the chosen enforcement point."""
        if group.name not in self._grouped:
            grouped: dict[str, list[IpLocation]] = defaultdict(list)
            unprotected: list[str] = []
            enforcing = self._enforcing_cache
            for member in group.members:
                nsgs = enforcing.get(member.member_key)
                if nsgs is None:
                    nsgs = self._enforcing(member)
                if not nsgs:
                    unprotected.append(f"{member.nic.name} ({member.ip})")
                for nsg in nsgs:
                    grouped[nsg].append(member)
            for nsg in grouped:
                self.out.nsg_ids.setdefault(nsg, nsg)
            self._grouped[group.name] = (dict(grouped), sorted(unprotected))
        by_nsg, unprotected = self._grouped[group.name]
        if rule is not None and unprotected:
            self.out.warnings.append(Issue(
                f"{len(unprotected)} member(s) of {group.name!r} have no NSG at the "
                f"{self.policy.enforcement.value} enforcement point, so this rule cannot be "
                "enforced for them: " + ", ".join(unprotected[:10]), rule=rule.name))
        return by_nsg

    # -- one rule on one NSG -----------------------------------------------------------------

    def _peer(self, name: str) -> _Peer:
        if name == BUILTIN_INTERNET:
            return _Peer(None, "Internet")
        if name == BUILTIN_ANY:
            return _Peer(None, "*")
        group = self.out.groups.get(name)
        return _Peer(group, None) if group is not None else _Peer(None, name)

    def _draft(self, template: _Template, nsg: str, local: tuple[str, list[IpLocation]],
               peer: _Peer) -> _Draft:
        """One policy rule on one NSG, without its priority (numbered once all are known)."""
        local_prefixes, local_asgs = self._side_for(nsg, local[0], local[1], scoped=True)
        peer_prefixes: tuple[str, ...]
        peer_asgs: tuple[str, ...]
        if peer.group is not None and self._peer_asgs.get(peer.group.name) == ():
            peer_prefixes, peer_asgs = self._prefixes(peer.group), ()  # no ASG can be exact
        elif peer.group is not None:
            peer_prefixes, peer_asgs = self._side_for(nsg, peer.group.name, peer.group.members,
                                                      scoped=False, external=peer.group)
        else:
            peer_prefixes, peer_asgs = (peer.token or "*",), ()
        # both ASG sides, when used, live in the one VNet this NSG protects (_exact_asg checks
        # it), which is Azure's rule for ASGs on both sides of one rule
        name, direction, access, protocol, ports, text, policy_rule = template
        if direction is Direction.INBOUND:
            return (name, direction, access, protocol, peer_prefixes, peer_asgs,
                    local_prefixes, local_asgs, ports, text, policy_rule)
        return (name, direction, access, protocol, local_prefixes, local_asgs,
                peer_prefixes, peer_asgs, ports, text, policy_rule)

    def _wide_draft(self, template: _Template, nsg: str, token: str, peer: _Peer) -> _Draft:
        """A rule whose local side is ``any`` or ``VirtualNetwork``: that token itself stands
        for what this NSG protects."""
        if peer.group is not None:
            peer_prefixes, peer_asgs = self._side_for(nsg, peer.group.name, peer.group.members,
                                                      scoped=False, external=peer.group)
        else:
            peer_prefixes, peer_asgs = (peer.token or "*",), ()
        name, direction, access, protocol, ports, text, policy_rule = template
        if direction is Direction.INBOUND:
            return (name, direction, access, protocol, peer_prefixes, peer_asgs, (token,), (),
                    ports, text, policy_rule)
        return (name, direction, access, protocol, (token,), (), peer_prefixes, peer_asgs,
                ports, text, policy_rule)

    def _template(self, rule: Rule, direction: Direction) -> _Template:
        """The NSG-independent fields of a policy rule's NSG rules (once per rule)."""
        return (
            rule_name(self.policy.ownership.prefix, rule.name, direction),
            direction,
            Access.ALLOW if rule.action is Action.ALLOW else Access.DENY,
            PROTOCOL_TO_ARM[rule.protocol.value],
            ("*",) if rule.ports == ALL_PORTS else tuple(str(p) for p in rule.ports),
            description(f"zts policy rule {rule.name}: {rule.source} -> {rule.destination}"),
            rule.name,
        )

    def _side_for(self, nsg: str, group: str, members: Sequence[IpLocation], *, scoped: bool,
                  external: ResolvedGroup | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """ASG reference when it is exact and allowed here, else CIDR prefixes (memoized per
        group, NSG and side: a thousand rules reuse a few hundred groups)."""
        cache_key = (group, nsg, scoped)
        found = self._sides.get(cache_key)
        if found is None:
            found = self._sides[cache_key] = self._side_uncached(nsg, group, members,
                                                                 scoped=scoped, external=external)
        return found

    def _side_uncached(self, nsg: str, group: str, members: Sequence[IpLocation], *,
                       scoped: bool, external: ResolvedGroup | None,
                       ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        has_external = external is not None and bool(external.external)
        if not has_external:
            asg = self._exact_asg(nsg, group, members, scoped=scoped)
            if asg is not None:
                return (), (self.inventory.asgs[asg].id,)
        if external is not None:
            return self._prefixes(external), ()
        return cover_text(m.ip for m in members), ()

    def _exact_asg(self, nsg: str, group: str, members: Sequence[IpLocation], *,
                   scoped: bool) -> str | None:
        """The first ASG (by key) whose members equal the group's (within this NSG's scope for
        the protected side) and which lives in the VNet this NSG protects."""
        vnets = self._vnet_of_scope.get(nsg, set())
        if not members or len(vnets) != 1:
            return None
        exact = self._scoped_asgs(nsg, members) if scoped else self._peer_exact(group, members)
        return next((asg for asg in exact if self._asg_vnets.get(asg, set()) <= vnets), None)

    def _scoped_asgs(self, nsg: str, members: Sequence[IpLocation]) -> list[str]:
        """ASGs (sorted) that, behind this NSG, hold exactly these members: as many members
        behind it as there are here, every one of them among them. ``members`` all sit
        behind ``nsg``."""
        size = len(members)
        found = []
        for asg in sorted(self._member_asgs.get(members[0].member_key, ())):
            if self._asg_in_scope.get((asg, nsg)) == size and all(
                    asg in self._member_asgs.get(m.member_key, ()) for m in members):
                found.append(asg)
        return found

    def _peer_exact(self, group: str, members: Sequence[IpLocation]) -> tuple[str, ...]:
        """ASGs (sorted) holding exactly the group's members; the peer side does not depend on
        the NSG, so this is computed once per group."""
        if group not in self._peer_asgs:
            size = len(members)  # distinct members: every ASG holding them all and no more
            self._peer_asgs[group] = tuple(sorted(
                asg for asg in self._candidates(members) if self._asg_sizes[asg] == size))
        return self._peer_asgs[group]

    def _candidates(self, members: Sequence[IpLocation]) -> frozenset[str]:
        """ASGs every member belongs to (usually settled after a few members)."""
        found: frozenset[str] | None = None
        for member in members:
            held = self._member_asgs.get(member_key(member), frozenset())
            found = held if found is None else found & held
            if not found:
                return frozenset()
        return found or frozenset()

    def _prefixes(self, group: ResolvedGroup | None) -> tuple[str, ...]:
        if group is None:
            return ("*",)
        if group.name not in self._prefix_cache:
            self._prefix_cache[group.name] = (
                cover_text(m.ip for m in group.members) if not group.external
                else tuple(str(p) for p in group.prefixes()))
        return self._prefix_cache[group.name]

    # -- numbering and posture ---------------------------------------------------------------

    def _number(self, nsg: str, direction: Direction,
                emitted: list[tuple[Rule, _Draft]]) -> list[DesiredRule]:
        own = self.policy.ownership
        posture = self._posture_rules(direction)
        top = own.band_high - len(posture)  # posture rules take the top of the band
        slots = top - own.band_low + 1
        drafts = [draft for _, draft in emitted]
        if len(drafts) > slots or not self._fits(nsg, drafts):
            # the safe reductions: exact ASG unions for prefix sides, then neighbours with the
            # same peers merged (ports coalesced); the planner re-checks Azure's limits
            drafts = [draft for _, draft in merge_adjacent(self._with_asg_unions(nsg, emitted))]
        step = PRIORITY_STEP if len(drafts) * PRIORITY_STEP <= slots else 1
        if len(drafts) > slots:
            # the band is the policy's: an error of the whole plan (a run applies nothing), and
            # this NSG's plan fails (it shows no change rather than the removal of every rule)
            message = (f"{len(drafts)} {direction.value.lower()} rules (after merging neighbours "
                       f"with the same action and peers) do not fit in the priority band "
                       f"{own.band_low}-{top}: widen the band (ownership.band) or merge policy "
                       "rules")
            self.out.errors.append(Issue(message, nsg_id=self.out.nsg_ids.get(nsg, nsg)))
            self.out.failed.setdefault(nsg, []).append(message)
            return []
        low = own.band_low
        numbered = [DesiredRule(d[0], low + i * step, *d[1:]) for i, d in enumerate(drafts)]
        return numbered + [_with_priority(p, top + 1 + i) for i, p in enumerate(posture)]

    def _with_asg_unions(self, nsg: str, emitted: list[tuple[Rule, _Draft]],
                         ) -> list[tuple[Rule, _Draft]]:
        """Each side written as prefixes, as a union of ASGs instead where one is exact: at
        most ten ASGs (Azure's limit per rule side), each holding only the side's members
        (behind this NSG for the protected side), together holding them all, all in the one
        VNet this NSG protects. Only tried over budget: Azure's overview and its limits page
        disagree on several ASGs per rule side (the limits page and the REST model allow ten);
        were ARM to refuse them, that NSG's write fails with nothing changed, as the plan
        would have failed anyway."""
        out: list[tuple[Rule, _Draft]] = []
        for rule, draft in emitted:
            inbound = draft[1] is Direction.INBOUND
            local, peer = (rule.destination, rule.source) if inbound else (rule.source,
                                                                          rule.destination)
            sides = list(draft)
            for name, scoped in ((local, True), (peer, False)):
                group = self.out.groups.get(name)
                if group is None or group.external:
                    continue
                at = _SOURCE_PREFIXES if inbound != scoped else _DESTINATION_PREFIXES
                if not sides[at]:
                    continue  # already an ASG (or nothing)
                union = (self._scoped_union(nsg, name) if scoped
                         else self._peer_union(nsg, group))
                if union is not None:
                    sides[at], sides[at + 1] = (), union
            out.append((rule, tuple(sides)))  # type: ignore[arg-type]
        return out

    def _scoped_union(self, nsg: str, group: str) -> tuple[str, ...] | None:
        """The protected side's union, once per group and NSG."""
        cache_key = (group, nsg)
        if cache_key not in self._scoped_unions:
            members = self._grouped.get(group, ({}, []))[0].get(nsg, [])
            vnets = self._vnet_of_scope.get(nsg, set())
            self._scoped_unions[cache_key] = _asg_union(
                members, self._member_asgs, lambda asg: self._asg_in_scope.get((asg, nsg), -1),
                lambda asg: self._asg_vnets.get(asg, set()) <= vnets,
                self.inventory) if len(vnets) == 1 else None
        return self._scoped_unions[cache_key]

    def _peer_union(self, nsg: str, group: ResolvedGroup) -> tuple[str, ...] | None:
        """The far side's union does not depend on the NSG, only on its one VNet being the
        members' one VNet: worked out once per group, and not at all for a group spanning
        several VNets (no ASG can reach across one)."""
        found = self._peer_unions.get(group.name)
        if found is None:
            vnets: set[str] = set()
            for member in group.members:
                vnets.add(key(member.vnet.id) if member.vnet is not None else "")
                if len(vnets) > 1:
                    break
            union = _asg_union(
                group.members, self._member_asgs, lambda asg: self._asg_sizes.get(asg, -1),
                lambda asg: self._asg_vnets.get(asg, set()) <= vnets,
                self.inventory) if len(vnets) == 1 and "" not in vnets else None
            found = self._peer_unions[group.name] = (vnets, union)
        vnets_of_group, union = found
        return union if union is not None and self._vnet_of_scope.get(nsg) == vnets_of_group \
            else None

    def _fits(self, nsg: str, drafts: list[_Draft]) -> bool:
        current = self.inventory.nsgs.get(nsg)
        others = [r for r in current.rules if not r.name.startswith(self.policy.ownership.prefix)] \
            if current else []
        sources = sum(len(d[_SOURCE_PREFIXES]) for d in drafts) + sum(
            len(r.source_prefixes) for r in others)
        destinations = sum(len(d[_DESTINATION_PREFIXES]) for d in drafts) + sum(
            len(r.destination_prefixes) for r in others)
        # both directions share the NSG budget; halving keeps each direction conservative
        return (len(drafts) + len(others) <= MAX_RULES_PER_NSG // 2
                and max(sources, destinations) <= MAX_PREFIXES_PER_NSG_SIDE // 2)

    def _posture_rules(self, direction: Direction) -> list[DesiredRule]:
        own, posture = self.policy.ownership, self.policy.posture
        if direction is Direction.INBOUND and posture.inbound is InboundPosture.DEFAULT_DENY:
            return [
                _posture(own.prefix + "allow-azure-lb-in", direction, Access.ALLOW,
                         "AzureLoadBalancer", "zts posture: keep Azure load balancer probes"),
                _posture(own.prefix + "default-deny-in", direction, Access.DENY, "*",
                         "zts posture: default deny inbound"),
            ]
        if direction is Direction.OUTBOUND and posture.outbound is OutboundPosture.DEFAULT_DENY:
            return [_posture(own.prefix + "default-deny-out", direction, Access.DENY, "*",
                             "zts posture: default deny outbound")]
        return []


def _asg_union(members: Sequence[IpLocation], member_asgs: dict[MemberKey, frozenset[str]],
               size_of: Callable[[str], int], allowed: Callable[[str], bool],
               inventory: Inventory) -> tuple[str, ...] | None:
    """Up to ten ASG ids (sorted) that together hold exactly ``members``: each ASG's
    members (as ``size_of`` counts them) all among them, ``allowed`` (its VNet) for each, every
    member in one; None when no such union exists. Greedy: the ASG covering most of what is
    left first."""
    if not members:
        return None
    held: dict[str, set[int]] = defaultdict(set)
    for i, member in enumerate(members):
        for asg in member_asgs.get(member.member_key, ()):
            held[asg].add(i)
    inside = {asg: found for asg, found in held.items()
              if len(found) == size_of(asg) and allowed(asg)}
    uncovered, chosen = set(range(len(members))), list[str]()
    while uncovered and len(chosen) < MAX_ASGS_PER_RULE_SIDE:
        best = max(sorted(inside), key=lambda a: len(inside[a] & uncovered), default=None)
        if best is None or not inside[best] & uncovered:
            return None
        chosen.append(best)
        uncovered -= inside.pop(best)
    if uncovered:
        return None
    return tuple(sorted(inventory.asgs[asg].id for asg in chosen))


def merge_adjacent(emitted: list[tuple[Rule, _Draft]]) -> list[tuple[Rule, _Draft]]:
    """Merge neighbouring rules with the same action, protocol and peers into one rule with the
    union of their ports. Only neighbours in this NSG's order: nothing sits between them, so
    first-match semantics cannot change."""
    merged: list[tuple[Rule, _Draft]] = []
    for rule, draft in emitted:
        if merged and merged[-1][1][2:8] == draft[2:8]:  # access, protocol, both sides
            first_rule, previous = merged[-1]
            ports = _union_ports(previous[_PORTS], draft[_PORTS])
            names = f"{previous[_POLICY_RULE]},{rule.name}"
            text = description(f"zts policy rules {names.replace(',', ', ')} (merged)")
            merged[-1] = (first_rule, (*previous[:8], ports, text, names))
        else:
            merged.append((rule, draft))
    return merged


def _union_ports(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The union of two port lists, coalesced (``80`` + ``81`` -> ``80-81``; every port ->
    ``*``): merging neighbours must not spend the port-range budget it saves on rules."""
    if "*" in a or "*" in b:
        return ("*",)
    spans = sorted(_port_span(p) for p in (*a, *b))
    merged: list[list[int]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    if merged == [[0, 65535]]:
        return ("*",)
    return tuple(str(low) if low == high else f"{low}-{high}" for low, high in merged)


def _port_span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _posture(name: str, direction: Direction, access: Access, source: str,
             text: str) -> DesiredRule:
    return DesiredRule(name=name, priority=0, direction=direction, access=access, protocol="*",
                       source_prefixes=(source,), source_asgs=(), destination_prefixes=("*",),
                       destination_asgs=(), destination_ports=("*",), description=text,
                       policy_rule="")


def _with_priority(rule: DesiredRule, priority: int) -> DesiredRule:
    """``replace(rule, priority=...)`` without its per-call field introspection (hot path)."""
    return DesiredRule(rule.name, priority, rule.direction, rule.access, rule.protocol,
                       rule.source_prefixes, rule.source_asgs, rule.destination_prefixes,
                       rule.destination_asgs, rule.destination_ports, rule.description,
                       rule.policy_rule)


def compile_policy(policy: Policy, inventory: Inventory) -> Compiled:
    with gc_paused():
        return Compiler(policy, inventory).compile()
