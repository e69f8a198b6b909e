"""Azure subscription events (Event Grid schema, or CloudEvents) -> what zts must re-read.

Events carry no resource body, arrive at least once and out of order, and a subscription topic
sends every write in it (deployments, storage, ...). This module decides, from the envelope
alone and cheaply, whether an event matters and which resource to re-read:

* NICs, VMs, ASGs, VNets, NSGs and private endpoints are watched; a subnet event re-reads its
  VNet (subnets are stored inside it), an NSG security-rule event re-reads its NSG;
* tag changes through the tags API (``.../providers/Microsoft.Resources/tags/default``) re-read
  the tagged resource;
* anything else is ignored with a reason; a broken envelope is malformed, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain import arm_id

WRITE = "Microsoft.Resources.ResourceWriteSuccess"
DELETE = "Microsoft.Resources.ResourceDeleteSuccess"
ACTION = "Microsoft.Resources.ResourceActionSuccess"
EVENT_KINDS = {WRITE: "write", DELETE: "delete", ACTION: "action"}

NIC = "microsoft.network/networkinterfaces"
VM = "microsoft.compute/virtualmachines"
ASG = "microsoft.network/applicationsecuritygroups"
VNET = "microsoft.network/virtualnetworks"
NSG = "microsoft.network/networksecuritygroups"
PRIVATE_ENDPOINT = "microsoft.network/privateendpoints"
WATCHED_TYPES = frozenset({NIC, VM, ASG, VNET, NSG, PRIVATE_ENDPOINT})
_PARENT_OF_CHILD = {  # child type -> re-read the parent of this type
    "microsoft.network/virtualnetworks/subnets": VNET,
    "microsoft.network/networksecuritygroups/securityrules": NSG,
}
_TAGS_SUFFIX = "/providers/microsoft.resources/tags/default"
_OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """An event worth acting on: re-read ``target`` (type ``target_type``)."""

    id: str
    kind: str  # write | delete | action
    subject: str  # the resource the event names
    target: str  # the resource to re-read (the subject, its parent, or the tagged resource)
    target_type: str  # lower-case ARM type of target
    operation: str
    time: datetime | None
    caller: str  # appid or object id of whoever made the change ("" when absent)


@dataclass(frozen=True, slots=True)
class Ignored:
    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Malformed:
    id: str
    reason: str


ParsedEvent = ResourceEvent | Ignored | Malformed


def parse_event(event: Any) -> ParsedEvent:
    """Classify one event (a dict as Event Grid delivers it, or its CloudEvents form)."""
    checked = _envelope(event)
    if isinstance(checked, Ignored | Malformed):
        return checked
    event_id, event_type, subject, data = checked
    operation = _text(data.get("operationName"))
    target = subject
    if subject.lower().endswith(_TAGS_SUFFIX):
        target = subject[: -len(_TAGS_SUFFIX)]
    elif event_type == ACTION:  # actions matter only when they set tags
        return Ignored(event_id, f"action {operation or '?'} does not change what zts reads")
    try:
        target_type = arm_id.parse(target).full_type
    except arm_id.InvalidArmId as error:
        return Malformed(event_id, f"subject is not an ARM id: {error}")
    parent = _PARENT_OF_CHILD.get(target_type)
    if parent is not None:
        target = "/".join(target.split("/")[:9])  # .../providers/<namespace>/<type>/<name>
        target_type = parent
    if target_type not in WATCHED_TYPES:
        return Ignored(event_id, f"{target_type} is not watched")
    kind = EVENT_KINDS[event_type]
    if target != subject and kind == "delete":
        kind = "write"  # a deleted subnet, rule or tag set changes its parent, which remains
    return ResourceEvent(
        id=event_id, kind=kind, subject=subject, target=target, target_type=target_type,
        operation=operation, time=_time(event.get("eventTime") or event.get("time")),
        caller=_caller(data),
    )


def _envelope(event: Any) -> tuple[str, str, str, Mapping[str, Any]] | Ignored | Malformed:
    """(id, event type, subject, data) of a usable envelope, or why not."""
    if not isinstance(event, Mapping):
        return Malformed("", f"an event must be a JSON object, got {type(event).__name__}")
    event_id = _text(event.get("id"))
    event_type = _text(event.get("eventType") or event.get("type"))
    data = event.get("data")
    if not event_id or not event_type:
        return Malformed(event_id, "no id" if not event_id else "no eventType")
    if event_type not in EVENT_KINDS:
        return Ignored(event_id, f"event type {event_type} is not handled")
    if not isinstance(data, Mapping):
        return Malformed(event_id, "no data object")
    subject = _text(event.get("subject")) or _text(data.get("resourceUri"))
    if not subject:
        return Malformed(event_id, "no subject or data.resourceUri")
    return event_id, event_type, subject, data


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Event Grid sends 7 fractional digits; Python takes at most 6
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _caller(data: Mapping[str, Any]) -> str:
    claims = data.get("claims")
    if not isinstance(claims, Mapping):
        return ""
    for name in ("appid", _OBJECT_ID_CLAIM, "oid"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value.lower()
    return ""
