"""Tolerant, typed access to raw ARM resource JSON.

The same resource reaches zts in three shapes seen in the wild:

* ARM REST / Resource Graph: camelCase fields nested under ``properties``;
* SDK-flattened camelCase (``az ... show`` output): the same fields at the top level;
* SDK-flattened snake_case (``as_dict()`` of msrest-era SDK models): ``private_ip_address``.

:class:`RawObject` looks a field up by its ARM (camelCase) name in all three places, so parsers are
written once against the documented REST names. Every failure raises :class:`FieldError` with the
JSON path of the field at fault, which the normalizer turns into a skip report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from ipaddress import ip_address, ip_network
from typing import Any

from shared.domain.assets import IpAddress, IpNetwork

_MISSING = object()


class FieldError(ValueError):
    """A field of a raw resource is missing or malformed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@cache
def snake_case(camel: str) -> str:
    """``privateIPAddress`` -> ``private_ip_address`` (the msrest attribute naming)."""
    step = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", camel)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", step).lower()


class RawObject:
    """A JSON object from an ARM payload, with the path used in error messages."""

    __slots__ = ("_props", "_row", "path")

    def __init__(self, row: Mapping[str, Any], path: str = "") -> None:
        self._row = row
        props = row.get("properties")
        self._props: Mapping[str, Any] = props if isinstance(props, Mapping) else {}
        self.path = path

    def _where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def value(self, name: str) -> Any:
        """The value of field ``name`` wherever the shape put it, or ``None``."""
        for source in (self._props, self._row):
            found = source.get(name, _MISSING)
            if found is _MISSING:
                found = source.get(snake_case(name), _MISSING)
            if found is not _MISSING:
                return found
        return None

    def text(self, name: str, *, required: bool = False) -> str | None:
        found = self.value(name)
        if found is None or found == "":
            if required:
                raise FieldError(self._where(name), "is required")
            return None
        if not isinstance(found, str):
            raise FieldError(self._where(name), f"must be a string, got {type(found).__name__}")
        return found

    def required_text(self, name: str) -> str:
        found = self.text(name, required=True)
        assert found is not None
        return found

    def integer(self, name: str, *, required: bool = False) -> int | None:
        found = self.value(name)
        if found is None:
            if required:
                raise FieldError(self._where(name), "is required")
            return None
        if isinstance(found, bool):
            raise FieldError(self._where(name), "must be an integer, got bool")
        if isinstance(found, int):
            return found
        if isinstance(found, str) and found.strip().lstrip("-").isdigit():
            return int(found)
        raise FieldError(self._where(name), f"must be an integer, got {found!r}")

    def flag(self, name: str) -> bool:
        found = self.value(name)
        if found is None:
            return False
        if isinstance(found, bool):
            return found
        if isinstance(found, str) and found.lower() in {"true", "false"}:
            return found.lower() == "true"
        raise FieldError(self._where(name), f"must be a boolean, got {found!r}")

    def objects(self, name: str) -> list[RawObject]:
        """A list of JSON objects (an absent or null field is an empty list)."""
        found = self.value(name)
        if found is None:
            return []
        if not isinstance(found, list):
            raise FieldError(self._where(name), f"must be a list, got {type(found).__name__}")
        items: list[RawObject] = []
        for index, item in enumerate(found):
            if not isinstance(item, Mapping):
                raise FieldError(f"{self._where(name)}[{index}]", "must be an object")
            items.append(RawObject(item, f"{self._where(name)}[{index}]"))
        return items

    def child(self, name: str) -> RawObject | None:
        found = self.value(name)
        if found is None:
            return None
        if not isinstance(found, Mapping):
            raise FieldError(self._where(name), f"must be an object, got {type(found).__name__}")
        return RawObject(found, self._where(name))

    def strings(self, name: str) -> tuple[str, ...]:
        found = self.value(name)
        if found is None:
            return ()
        if isinstance(found, str):
            return (found,) if found else ()
        if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
            raise FieldError(self._where(name), "must be a list of strings")
        return tuple(x for x in found if x)

    def ref(self, name: str) -> str | None:
        """The ``id`` of a sub-resource reference such as ``{"subnet": {"id": "..."}}``."""
        sub = self.child(name)
        if sub is None:
            return None
        return sub.text("id")

    def refs(self, name: str) -> tuple[str, ...]:
        """The ids of a list of sub-resource references (entries without an id are errors)."""
        return tuple(item.required_text("id") for item in self.objects(name))

    def tags(self) -> dict[str, str]:
        found = self._row.get("tags")
        if found is None:
            return {}
        if not isinstance(found, Mapping):
            raise FieldError(self._where("tags"), "must be an object of strings")
        return {str(k): "" if v is None else str(v) for k, v in found.items()}

    def address(self, name: str) -> IpAddress | None:
        found = self.text(name)
        if found is None:
            return None
        try:
            return ip_address(found)
        except ValueError:
            raise FieldError(self._where(name), f"is not an IP address: {found!r}") from None

    def networks(self, *names: str) -> tuple[IpNetwork, ...]:
        """CIDR prefixes from the singular and plural forms of a field (deduplicated, ordered)."""
        seen: dict[IpNetwork, None] = {}
        for name in names:
            for text in self.strings(name):
                try:
                    seen.setdefault(ip_network(text, strict=False))
                except ValueError:
                    raise FieldError(self._where(name), f"is not a CIDR prefix: {text!r}") from None
        return tuple(seen)
