"""The validated policy, as pure typed data (what the loader produces and the compiler reads).

A policy file (``apiVersion: zts/v1``) names *groups* by selectors over cloud context and *rules*
between groups. The loader (``shared.policy.loader``) turns YAML into these types after checking
everything; nothing downstream re-validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.domain.assets import IpNetwork

API_VERSION = "zts/v1"
BUILTIN_INTERNET = "internet"
BUILTIN_ANY = "any"


class InboundPosture(StrEnum):
    DEFAULT_DENY = "default-deny"  # a managed deny-all closes zts's band
    OBSERVE = "observe"  # allow rules only; no managed deny


class OutboundPosture(StrEnum):
    ALLOW = "allow"
    DEFAULT_DENY = "default-deny"


class EnforcementPoint(StrEnum):
    SUBNET = "subnet"
    NIC = "nic"
    BOTH = "both"


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ANY = "any"


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


# -- selectors -------------------------------------------------------------------------------
# ``ref`` is a name or a full ARM id; ids compare case-insensitively, names must be unambiguous
# in the inventory (resolution reports the candidates otherwise).


@dataclass(frozen=True, slots=True)
class VnetSelector:
    ref: str


@dataclass(frozen=True, slots=True)
class SubnetSelector:
    ref: str  # "vnet/subnet" or a subnet ARM id


@dataclass(frozen=True, slots=True)
class AsgSelector:
    ref: str


@dataclass(frozen=True, slots=True)
class ResourceGroupSelector:
    ref: str  # name, "subscription/rg", or id


@dataclass(frozen=True, slots=True)
class SubscriptionSelector:
    ref: str  # display name or subscription id


@dataclass(frozen=True, slots=True)
class TagsSelector:
    tags: tuple[tuple[str, str], ...]  # every pair must match; value "*" = key present


@dataclass(frozen=True, slots=True)
class CidrSelector:
    prefixes: tuple[IpNetwork, ...]  # external ranges (not members of the estate)


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    item: Selector


Selector = (
    VnetSelector | SubnetSelector | AsgSelector | ResourceGroupSelector | SubscriptionSelector
    | TagsSelector | CidrSelector | AllOf | AnyOf | NotOf
)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    selector: Selector
    line: int | None = None  # where it is defined in the policy file


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


ALL_PORTS = (PortRange(0, 65535),)


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule. ``source``/``destination`` name a group, ``internet``, ``any`` or an
    Azure service tag (passed through as a service-tag prefix)."""

    name: str
    priority: int
    source: str
    destination: str
    ports: tuple[PortRange, ...]  # ALL_PORTS for "any"
    protocol: Protocol
    action: Action
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Posture:
    inbound: InboundPosture = InboundPosture.DEFAULT_DENY
    outbound: OutboundPosture = OutboundPosture.ALLOW


@dataclass(frozen=True, slots=True)
class Ownership:
    """The part of every NSG that zts owns: a priority band and a rule-name prefix."""

    band_low: int = 100
    band_high: int = 3999
    prefix: str = "zts-"


@dataclass(frozen=True, slots=True)
class Policy:
    posture: Posture
    enforcement: EnforcementPoint
    groups: tuple[Group, ...]
    rules: tuple[Rule, ...]  # in priority order
    ownership: Ownership = field(default_factory=Ownership)
