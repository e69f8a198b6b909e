"""Azure NSG as a compilation target: limits, names, priorities, the ARM rule shape.

Limits come from the Azure networking limits page (see the team's azure-formats reference §4.1)
and are checked before any write; nothing is ever truncated to fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.assets import Access, Direction

MAX_RULES_PER_NSG = 1000
MAX_PREFIXES_PER_NSG_SIDE = 4000  # addresses/ranges, source and destination counted apart
MAX_ASGS_PER_NSG = 100
MAX_ASGS_PER_RULE_SIDE = 10
MIN_PRIORITY, MAX_PRIORITY = 100, 4096
MAX_RULE_NAME = 80
MAX_DESCRIPTION = 140
PRIORITY_STEP = 10  # gaps leave room for hand-made emergency rules between zts's own

PROTOCOL_TO_ARM = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "any": "*"}


@dataclass(frozen=True, slots=True)
class DesiredRule:
    """One NSG security rule zts wants, in ARM terms. Exactly one of prefixes/ASGs per side."""

    name: str
    priority: int
    direction: Direction
    access: Access
    protocol: str  # Tcp, Udp, Icmp or *
    source_prefixes: tuple[str, ...]
    source_asgs: tuple[str, ...]
    destination_prefixes: tuple[str, ...]
    destination_asgs: tuple[str, ...]
    destination_ports: tuple[str, ...]
    description: str
    policy_rule: str  # the policy rule it implements ("" for posture rules)

    def to_arm(self) -> dict[str, Any]:
        """The ARM securityRule JSON (singular field when one value, plural when several)."""
        props: dict[str, Any] = {
            "priority": self.priority,
            "direction": self.direction.value,
            "access": self.access.value,
            "protocol": self.protocol,
            "sourcePortRange": "*",
            "description": self.description,
        }
        _one_or_many(props, "destinationPortRange", "destinationPortRanges",
                     self.destination_ports)
        _address(props, "source", self.source_prefixes, self.source_asgs)
        _address(props, "destination", self.destination_prefixes, self.destination_asgs)
        return {"name": self.name, "properties": dict(sorted(props.items()))}


def _one_or_many(props: dict[str, Any], singular: str, plural: str,
                 values: tuple[str, ...]) -> None:
    if len(values) == 1:
        props[singular] = values[0]
    else:
        props[plural] = list(values)


def _address(props: dict[str, Any], side: str, prefixes: tuple[str, ...],
             asgs: tuple[str, ...]) -> None:
    if asgs:
        props[f"{side}ApplicationSecurityGroups"] = [{"id": a} for a in asgs]
    else:
        _one_or_many(props, f"{side}AddressPrefix", f"{side}AddressPrefixes", prefixes)


def rule_name(prefix: str, policy_rule: str, direction: Direction) -> str:
    """Deterministic, readable, within Azure's 80 characters (loader caps the parts)."""
    suffix = "in" if direction is Direction.INBOUND else "out"
    return f"{prefix}{policy_rule}-{suffix}"[:MAX_RULE_NAME]


def description(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 3] + "..."
