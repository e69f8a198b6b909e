"""The policy file's shape as pydantic models: one source for validation and the editor schema.

The models check structure and every single value (names, ports, CIDRs, refs, ranges) so that
pydantic, which validates a whole document and collects *every* failure, reports all of them in
one pass. Each failure is raised as a :class:`PydanticCustomError` whose type is a stable zts code
(``ZTS-P0xx``), so :mod:`shared.policy.loader` can turn it into an issue without parsing text.
Checks that need more than one value (unique names, group references, overlapping rules) live in
the loader, which knows the YAML locations.

The same models export the JSON Schema (:func:`policy_json_schema`); docstrings and field
descriptions below are user-facing because editors show them as hover text.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Sized
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain import arm_id
from shared.domain.assets import IpNetwork
from shared.policy.model import API_VERSION, BUILTIN_ANY, BUILTIN_INTERNET, PortRange
from shared.policy.nsg_target import MAX_PRIORITY, MIN_PRIORITY

# -- issue codes ----------------------------------------------------------------------------
# Stable: tests, docs and users' CI scripts match on them. Never renumber; retire instead.
# Errors are ZTS-P0xx, warnings ZTS-P1xx.

ISSUE_CODES: dict[str, str] = {
    "ZTS-P001": "error: the policy file cannot be read (missing, unreadable, not UTF-8)",
    "ZTS-P002": "error: not valid YAML (syntax, tabs, unsupported tags, several documents)",
    "ZTS-P003": "error: a mapping has the same key twice",
    "ZTS-P004": "error: the document is empty or its root is not a mapping",
    "ZTS-P005": "error: the document is too large, too deep or expands too much (anchors)",
    "ZTS-P010": "error: unknown key (the message lists the allowed keys)",
    "ZTS-P011": "error: a required key is missing or has no value",
    "ZTS-P012": "error: a value has the wrong type",
    "ZTS-P013": "error: a value is not one of the allowed choices",
    "ZTS-P014": "error: apiVersion is not zts/v1",
    "ZTS-P020": "error: invalid group name",
    "ZTS-P021": "error: a group name shadows a built-in (internet, any)",
    "ZTS-P022": "error: a selector must have exactly one key",
    "ZTS-P023": "error: invalid vnet/subnet/asg/resourceGroup/subscription reference",
    "ZTS-P024": "error: empty tags, cidr, all or any selector",
    "ZTS-P025": "error: invalid CIDR",
    "ZTS-P030": "error: invalid rule name",
    "ZTS-P031": "error: duplicate rule name",
    "ZTS-P032": "error: rule priority outside 1-10000",
    "ZTS-P033": "error: duplicate rule priority",
    "ZTS-P034": "error: unknown group in from/to",
    "ZTS-P035": "error: invalid port, port range or ports list",
    "ZTS-P036": "error: protocol icmp/any given specific ports",
    "ZTS-P040": "error: invalid ownership band",
    "ZTS-P041": "error: invalid ownership rule-name prefix",
    "ZTS-P101": "warning: CIDR has host bits set (the network address is used)",
    "ZTS-P102": "warning: a group has no positive selector (matches everything except ...)",
    "ZTS-P103": "warning: a rule allows traffic from the Internet (internet or any)",
    "ZTS-P104": "warning: two rules overlap with opposite actions",
    "ZTS-P105": "warning: allow to an external (cidr-only) group has no effect",
    "ZTS-P106": "warning: not a known Azure service tag (passed through as written)",
    "ZTS-P107": "warning: service tag spelled in other casing (canonical spelling used)",
    "ZTS-P108": "warning: a rule repeats an earlier rule",
    "ZTS-P109": "warning: a group's name is a service tag's but for the case",
}

GROUP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
RULE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,19}")
SERVICE_TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)?")
PORT_RE = re.compile(r"\s*(\d{1,10})\s*(?:-\s*(\d{1,10})\s*)?")
BUILTINS = (BUILTIN_INTERNET, BUILTIN_ANY)
PRIORITY_MIN, PRIORITY_MAX = 1, 10000
PORT_MAX = 65535
AZURE_PRIORITY_MIN, AZURE_PRIORITY_MAX = MIN_PRIORITY, MAX_PRIORITY  # nsg_target's
DEFAULT_BAND = (100, 3999)
DEFAULT_PREFIX = "zts-"
ANY_PORTS = "any"


def fail(code: str, message: str) -> NoReturn:
    """Raise a pydantic error carrying a zts code. No context is passed on purpose: pydantic would
    treat braces in user-supplied text as template fields."""
    raise PydanticCustomError(code, message)


# -- single-value checks --------------------------------------------------------------------


def _check_api_version(value: str) -> str:
    if value != API_VERSION:
        fail("ZTS-P014", f"unsupported apiVersion {value!r} (expected {API_VERSION!r})")
    return value


def _check_group_name(name: str) -> str:
    if name in BUILTINS:
        fail("ZTS-P021", f"group name {name!r} shadows the built-in group {name!r}")
    if not GROUP_NAME_RE.fullmatch(name):
        fail(
            "ZTS-P020",
            f"invalid group name {name!r}: use 1-40 lower-case letters, digits and '-', "
            "starting with a letter",
        )
    return name


def _check_rule_name(name: str) -> str:
    if not RULE_NAME_RE.fullmatch(name):
        fail(
            "ZTS-P030",
            f"invalid rule name {name!r}: use 1-48 lower-case letters, digits and '-', "
            "starting with a letter or digit",
        )
    return name


def _check_priority(value: int) -> int:
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        fail("ZTS-P032", f"priority {value} is out of range {PRIORITY_MIN}-{PRIORITY_MAX}")
    return value


def _port_number(text: str) -> int:
    number = int(text)
    if number > PORT_MAX:
        fail("ZTS-P035", f"port {number} is out of range 0-{PORT_MAX}")
    return number


def parse_port_item(value: Any) -> PortRange | None:
    """One entry of ``ports``: a number, a ``"low-high"`` range or ``any`` (returned as None)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail("ZTS-P035", f"invalid port {value!r}: use a number, a 'low-high' range or 'any'")
    if isinstance(value, int):
        if not 0 <= value <= PORT_MAX:
            fail("ZTS-P035", f"port {value} is out of range 0-{PORT_MAX}")
        return PortRange(value, value)
    if value.strip().lower() == ANY_PORTS:
        return None
    match = PORT_RE.fullmatch(value)
    if match is None:
        fail("ZTS-P035", f"invalid port {value!r}: use a number, a 'low-high' range or 'any'")
    low = _port_number(match.group(1))
    high = low if match.group(2) is None else _port_number(match.group(2))
    if low > high:
        fail("ZTS-P035", f"port range {value!r} is reversed (low {low} > high {high})")
    return PortRange(low, high)


def _ports_before(value: Any) -> Any:
    """``ports: any`` is shorthand for ``[any]``; a bare number is refused so that intent is
    always a list the reader can scan."""
    if value is None:
        fail("ZTS-P011", "ports has no value: list the ports, or write 'any' for all ports")
    if isinstance(value, str) and value.strip().lower() == ANY_PORTS:
        return [value]
    if not isinstance(value, list):
        fail(
            "ZTS-P012",
            f"ports should be a list (e.g. [443, '8000-8100']) or 'any', got {value!r}",
        )
    return value


def _ports_after(items: list[PortRange | None]) -> list[PortRange | None]:
    if not items:
        fail("ZTS-P035", "ports is empty: list the ports, or write 'any' for all ports")
    if None in items and len(items) > 1:
        fail("ZTS-P035", "'any' cannot be combined with other ports")
    return items


def parse_cidr(text: str) -> tuple[IpNetwork, bool]:
    """Parse a CIDR or address; the flag says host bits were set (the caller warns)."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        fail("ZTS-P025", f"invalid CIDR {text!r}")
    try:
        ipaddress.ip_network(text.strip())
    except ValueError:
        return network, True
    return network, False


def _check_cidr(text: str) -> str:
    parse_cidr(text)
    return text


def _cidr_before(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _non_empty(kind: str) -> Callable[[Sized], Sized]:
    def check(value: Sized) -> Sized:
        if not value:
            fail("ZTS-P024", f"{kind} must not be empty")
        return value

    return check


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if not tags:
        fail("ZTS-P024", "tags must not be empty")
    if "" in tags:
        fail("ZTS-P024", "tag names must not be empty")
    return tags


_REF_KINDS: dict[str, tuple[str, str, str]] = {
    # selector key: (display, ARM full type of an id, name form)
    "vnet": ("virtual network", "microsoft.network/virtualnetworks", "name"),
    "subnet": ("subnet", "microsoft.network/virtualnetworks/subnets", "vnet/subnet"),
    "asg": ("application security group", "microsoft.network/applicationsecuritygroups", "name"),
    "resourceGroup": (
        "resource group", "microsoft.resources/subscriptions/resourcegroups", "name or sub/rg"),
    "subscription": ("subscription", "microsoft.resources/subscriptions", "name or id"),
}
_NAME_SLASHES = {"vnet": (0,), "subnet": (1,), "asg": (0,), "resourceGroup": (0, 1),
                 "subscription": (0,)}


def _ref_checker(kind: str) -> Callable[[str], str]:
    """A validator for a ``kind`` reference: a name in its allowed form, or a full ARM id of the
    right resource type (a vnet id where a subnet is expected is a mistake worth catching early)."""
    display, full_type, form = _REF_KINDS[kind]

    def check(ref: str) -> str:
        if not ref.strip():
            fail("ZTS-P023", f"{kind} reference is empty")
        if ref != ref.strip():
            fail("ZTS-P023", f"{kind} reference {ref!r} has leading or trailing spaces")
        if ref.startswith("/"):
            _check_ref_id(ref, display, full_type)
        elif ref.count("/") not in _NAME_SLASHES[kind] or "" in ref.split("/"):
            fail("ZTS-P023", f"invalid {display} reference {ref!r}: expected {form} or an ARM id")
        return ref

    return check


def _check_ref_id(ref: str, display: str, full_type: str) -> None:
    if ref.endswith("/"):
        fail("ZTS-P023", f"{display} id {ref!r} ends with '/'")
    try:
        parsed = arm_id.parse(ref)
    except arm_id.InvalidArmId as err:
        fail("ZTS-P023", f"invalid {display} id {ref!r}: {err}")
    if parsed.full_type != full_type:
        fail("ZTS-P023", f"{ref!r} is not a {display} id (it names a {parsed.full_type})")


# -- annotated types ------------------------------------------------------------------------

ApiVersion = Annotated[
    str,
    AfterValidator(_check_api_version),
    WithJsonSchema({"type": "string", "const": API_VERSION}),
]
GroupName = Annotated[
    str,
    AfterValidator(_check_group_name),
    Field(json_schema_extra={"pattern": f"^{GROUP_NAME_RE.pattern}$"}),
]
RuleName = Annotated[
    str,
    AfterValidator(_check_rule_name),
    Field(json_schema_extra={"pattern": f"^{RULE_NAME_RE.pattern}$"}),
]
Priority = Annotated[
    int,
    AfterValidator(_check_priority),
    Field(json_schema_extra={"minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX}),
]
#: what the loader reads as ``any`` (any case, spaces around), for the schema to agree with it
_ANY_PORTS_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^\s*[Aa][Nn][Yy]\s*$"}
_PORT_ITEM_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": PORT_MAX},
        # PORT_RE's shape; the loader then checks the numbers (0-65535, low <= high)
        {"type": "string", "pattern": r"^\s*\d{1,10}\s*(-\s*\d{1,10}\s*)?$"},
        _ANY_PORTS_SCHEMA,
    ]
}
PortItem = Annotated[PortRange | None, PlainValidator(parse_port_item)]
Ports = Annotated[
    list[PortItem],
    BeforeValidator(_ports_before),
    AfterValidator(_ports_after),
    WithJsonSchema({"anyOf": [
        _ANY_PORTS_SCHEMA,
        {"type": "array", "minItems": 1, "items": _PORT_ITEM_SCHEMA},
    ]}),
]
CidrText = Annotated[str, AfterValidator(_check_cidr)]
Cidrs = Annotated[
    list[CidrText],
    BeforeValidator(_cidr_before),
    AfterValidator(_non_empty("cidr")),
    WithJsonSchema({"anyOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "items": {"type": "string"}},
    ]}),
]
TagMap = Annotated[
    dict[str, str], AfterValidator(_check_tags), Field(json_schema_extra={"minProperties": 1})
]


_REF_SCHEMA = Field(json_schema_extra={"minLength": 1})
VnetRef = Annotated[str, AfterValidator(_ref_checker("vnet")), _REF_SCHEMA]
SubnetRef = Annotated[str, AfterValidator(_ref_checker("subnet")), _REF_SCHEMA]
AsgRef = Annotated[str, AfterValidator(_ref_checker("asg")), _REF_SCHEMA]
ResourceGroupRef = Annotated[str, AfterValidator(_ref_checker("resourceGroup")), _REF_SCHEMA]
SubscriptionRef = Annotated[str, AfterValidator(_ref_checker("subscription")), _REF_SCHEMA]


def _check_band(band: list[int]) -> list[int]:
    if len(band) != 2:
        fail("ZTS-P040", f"band should be [low, high], got {len(band)} values")
    for value in band:
        if not AZURE_PRIORITY_MIN <= value <= AZURE_PRIORITY_MAX:
            fail(
                "ZTS-P040",
                f"band value {value} is outside Azure's NSG priority range "
                f"{AZURE_PRIORITY_MIN}-{AZURE_PRIORITY_MAX}",
            )
    if band[0] >= band[1]:
        fail("ZTS-P040", f"band low {band[0]} must be below band high {band[1]}")
    return band


def _check_prefix(prefix: str) -> str:
    if not PREFIX_RE.fullmatch(prefix):
        fail(
            "ZTS-P041",
            f"invalid rule-name prefix {prefix!r}: 1-20 letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
        )
    return prefix


_BAND_VALUE = {"type": "integer", "minimum": AZURE_PRIORITY_MIN, "maximum": AZURE_PRIORITY_MAX}
Band = Annotated[
    list[int],
    AfterValidator(_check_band),
    WithJsonSchema({
        "type": "array", "prefixItems": [_BAND_VALUE, _BAND_VALUE], "items": False,
        "minItems": 2, "maxItems": 2, "default": list(DEFAULT_BAND),
    }),
]
Prefix = Annotated[
    str,
    AfterValidator(_check_prefix),
    Field(json_schema_extra={"pattern": f"^{PREFIX_RE.pattern}$"}),
]
Peer = Annotated[str, Field(json_schema_extra={"minLength": 1})]
SelectorList = Annotated[
    list["SelectorSpec"], AfterValidator(_non_empty("the list")),
    Field(json_schema_extra={"minItems": 1}),
]

# -- models ---------------------------------------------------------------------------------


def _config(title: str, **extra: Any) -> ConfigDict:
    """Strict (YAML ``"100"`` is not a priority, ``yes`` is not a string) and closed (an unknown
    key is a typo until proven otherwise)."""
    return ConfigDict(
        strict=True, extra="forbid", frozen=True, title=title, json_schema_extra=extra or None
    )


class SelectorSpec(BaseModel):
    """Which workloads belong to a group: exactly one of the keys below. References are names or
    full ARM ids (ids compare case-insensitively; an ambiguous name is reported when resolved)."""

    model_config = _config("Selector", minProperties=1, maxProperties=1)

    vnet: VnetRef | None = Field(
        default=None, description="NICs in this virtual network (name or id)."
    )
    subnet: SubnetRef | None = Field(
        default=None, description="NICs in this subnet ('vnet/subnet' or id)."
    )
    asg: AsgRef | None = Field(
        default=None, description="NICs in this application security group (name or id)."
    )
    resource_group: ResourceGroupRef | None = Field(
        default=None,
        alias="resourceGroup",
        description="NICs in this resource group (name, 'subscription/rg' or id).",
    )
    subscription: SubscriptionRef | None = Field(
        default=None, description="NICs in this subscription (display name, GUID or id)."
    )
    tags: TagMap | None = Field(
        default=None,
        description="Workloads carrying every tag given; value '*' means the tag is present.",
    )
    cidr: Cidrs | None = Field(
        default=None, description="External address ranges (not members of the estate)."
    )
    all_: SelectorList | None = Field(
        default=None, alias="all", description="Workloads matching every selector in the list."
    )
    any_: SelectorList | None = Field(
        default=None,
        alias="any",
        description="Workloads matching at least one selector in the list.",
    )
    not_: SelectorSpec | None = Field(
        default=None, alias="not", description="Workloads not matching the selector."
    )

    def keys(self) -> list[str]:
        """The selector keys present, as written in the file, in declaration order."""
        fields = type(self).model_fields
        return [info.alias or name for name, info in fields.items() if name in
                self.model_fields_set]

    def value(self) -> Any:
        """The value of the single key (valid once the model validated)."""
        fields = type(self).model_fields
        name = next(name for name in fields if name in self.model_fields_set)
        return getattr(self, name)

    @model_validator(mode="after")
    def _exactly_one_key(self) -> SelectorSpec:
        keys = self.keys()
        if not keys:
            fail("ZTS-P022", f"empty selector: use one of {', '.join(SELECTOR_KEYS)}")
        if len(keys) > 1:
            fail(
                "ZTS-P022",
                f"a selector has exactly one key, got {', '.join(keys)}: "
                "combine them with 'all: [...]' or 'any: [...]'",
            )
        if self.value() is None:
            fail("ZTS-P011", f"selector key {keys[0]!r} has no value")
        return self


SELECTOR_KEYS = tuple(info.alias or name for name, info in SelectorSpec.model_fields.items())


class RuleSpec(BaseModel):
    """One rule: traffic from one group to another on some ports. Rules apply in priority order
    (lower first); the compiler maps priorities into zts's NSG priority band."""

    model_config = _config("Rule")

    name: RuleName = Field(description="Unique rule name; NSG rule names and descriptions use it.")
    priority: Priority = Field(description="Unique policy order, 1-10000; lower applies first.")
    from_: Peer = Field(
        alias="from",
        description="Source: a group, 'internet', 'any' or an Azure service tag (e.g. Storage).",
    )
    to: Peer = Field(
        description="Destination: a group, 'internet', 'any' or an Azure service tag.",
    )
    ports: Ports = Field(
        description="Destination ports: numbers, 'low-high' ranges, or 'any' (required)."
    )
    protocol: Literal["tcp", "udp", "icmp", "any"] = Field(
        description="tcp, udp, icmp or any; icmp and any take 'ports: any'."
    )
    action: Literal["allow", "deny"] = Field(description="allow or deny.")


class PostureSpec(BaseModel):
    """What happens to traffic no rule mentions."""

    model_config = _config("Posture")

    inbound: Literal["default-deny", "observe"] = Field(
        default="default-deny",
        description="default-deny: a managed deny-all closes zts's band; observe: no managed deny.",
    )
    outbound: Literal["allow", "default-deny"] = Field(
        default="allow", description="allow, or default-deny to also enforce rules on sources."
    )


class OwnershipSpec(BaseModel):
    """The part of every NSG zts owns; rules outside it are never touched."""

    model_config = _config("Ownership")

    band: Band = Field(
        default_factory=lambda: list(DEFAULT_BAND),
        description="[low, high] NSG priorities zts may use, within Azure's 100-4096.",
    )
    prefix: Prefix = Field(
        default=DEFAULT_PREFIX, description="Prefix of every rule name zts writes."
    )


class PolicySpec(BaseModel):
    """A zts segmentation policy: groups of workloads chosen by cloud context, and rules
    between them, compiled into native NSG rules."""

    model_config = _config("zts policy")

    api_version: ApiVersion = Field(alias="apiVersion", description=f"Always {API_VERSION!r}.")
    posture: PostureSpec | None = Field(
        default=None, description="Default behaviour, inbound and outbound."
    )
    enforcement: Literal["subnet", "nic", "both"] = Field(
        default="subnet", description="Which NSGs receive the rules: subnet, nic or both."
    )
    ownership: OwnershipSpec | None = Field(
        default=None, description="zts's NSG priority band and rule-name prefix."
    )
    groups: dict[GroupName, SelectorSpec] | None = Field(
        default=None, description="Group name -> selector. 'internet' and 'any' are built in."
    )
    rules: list[RuleSpec] | None = Field(default=None, description="The rules, in any order.")


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a policy file, for editors (YAML language servers).

    Generated from the models, then tightened where pydantic's rendering is looser than the
    loader: group names go in ``propertyNames`` (pydantic emits ``patternProperties``, which lets a
    misspelt name through unchecked), selector keys do not admit null, and the auto-generated
    property titles ("Resourcegroup") are dropped in favour of the descriptions."""
    schema = copy.deepcopy(PolicySpec.model_json_schema(by_alias=True, mode="validation"))
    selector_ref = {"$ref": f"#/$defs/{SelectorSpec.__name__}"}
    for option in schema["properties"]["groups"]["anyOf"]:
        if option.get("type") == "object":
            option.pop("patternProperties", None)
            option["propertyNames"] = {
                "pattern": f"^{GROUP_NAME_RE.pattern}$", "not": {"enum": list(BUILTINS)}
            }
            option["additionalProperties"] = selector_ref
    selector = schema["$defs"][SelectorSpec.__name__]["properties"]
    for key, prop in selector.items():
        options = [o for o in prop.pop("anyOf") if o != {"type": "null"}]
        prop.pop("default", None)
        selector[key] = {**options[0], **prop} if len(options) == 1 else {"anyOf": options, **prop}
    for definition in [schema, *schema["$defs"].values()]:
        for prop in definition["properties"].values():
            prop.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
