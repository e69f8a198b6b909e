"""ARM resource ids: parsing and case-insensitive identity.

ARM treats resource ids case-insensitively (Resource Graph lower-cases types, the portal keeps the
casing the resource was created with, flow logs upper-case everything). zts keeps the original
casing for display and uses :func:`key` wherever two ids are compared or used as a lookup key.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ArmId", "InvalidArmId", "key", "parent_id", "parse"]


class InvalidArmId(ValueError):
    """Raised when a string is not a well-formed ARM resource id."""


def key(arm_id: str) -> str:
    """The comparison key of an ARM id: lower-cased, without a trailing slash."""
    return arm_id.strip().rstrip("/").lower()


@dataclass(frozen=True, slots=True)
class ArmId:
    """The parts of an ARM id such as
    ``/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/V/subnets/N``.

    ``types`` and ``names`` hold the resource type chain (``("virtualNetworks", "subnets")``) and
    the matching names (``("V", "N")``); both are empty for subscription and resource-group ids.
    """

    subscription_id: str
    resource_group: str | None
    namespace: str | None
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        """The last name in the id (the resource's own name)."""
        if self.names:
            return self.names[-1]
        return self.resource_group or self.subscription_id

    @property
    def full_type(self) -> str:
        """``microsoft.network/virtualnetworks/subnets`` style type, lower-cased."""
        if self.namespace is None:
            if self.resource_group is not None:
                return "microsoft.resources/subscriptions/resourcegroups"
            return "microsoft.resources/subscriptions"
        return "/".join((self.namespace, *self.types)).lower()


def parse(arm_id: str) -> ArmId:
    """Parse an ARM id; raises :class:`InvalidArmId` with the reason when it is malformed."""
    if not isinstance(arm_id, str) or not arm_id.startswith("/"):
        raise InvalidArmId(f"not an ARM id (must start with '/'): {arm_id!r}")
    parts = arm_id.strip().rstrip("/").split("/")[1:]
    if len(parts) < 2 or parts[0].lower() != "subscriptions" or not parts[1]:
        raise InvalidArmId(f"ARM id does not start with /subscriptions/<id>: {arm_id!r}")
    subscription_id = parts[1]
    rest = parts[2:]
    resource_group: str | None = None
    if rest and rest[0].lower() == "resourcegroups":
        if len(rest) < 2 or not rest[1]:
            raise InvalidArmId(f"ARM id has an empty resource group: {arm_id!r}")
        resource_group = rest[1]
        rest = rest[2:]
    if not rest:
        return ArmId(subscription_id, resource_group, None, (), ())
    if rest[0].lower() != "providers" or len(rest) < 4:
        raise InvalidArmId(f"ARM id has no provider/type/name part: {arm_id!r}")
    namespace = rest[1]
    pairs = rest[2:]
    if len(pairs) % 2 or any(not p for p in pairs):
        raise InvalidArmId(f"ARM id has an unpaired type/name segment: {arm_id!r}")
    return ArmId(
        subscription_id=subscription_id,
        resource_group=resource_group,
        namespace=namespace,
        types=tuple(pairs[0::2]),
        names=tuple(pairs[1::2]),
    )


def parent_id(arm_id: str) -> str:
    """The id of the parent resource (``.../virtualNetworks/V`` for a subnet id)."""
    parsed = parse(arm_id)
    if len(parsed.types) < 2:
        raise InvalidArmId(f"ARM id has no parent resource: {arm_id!r}")
    return arm_id.strip().rstrip("/").rsplit("/", 2)[0]
