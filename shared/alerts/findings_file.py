"""Read findings from JSON: ``{"findings": [...]}`` with each item as ``Finding.as_dict()``
prints it (so ``zts apply --json`` output works too), or a bare list of such items.

``as_dict`` prints the fingerprint but not the identity it was computed from, so an item may carry
``identity`` (a list of strings; the fingerprint is then recomputed and must match when both are
given) or only ``fingerprint`` (32 hex digits, trusted as printed). Every malformed item is
reported with its index and field; nothing is routed from a file with errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.alerts.records import Observation
from shared.domain.findings import SEVERITIES, Finding

__all__ = ["MAX_FINDINGS", "FindingsLoad", "parse_findings"]

MAX_FINDINGS: Final = 10_000
_FINGERPRINT: Final = re.compile(r"[0-9a-f]{32}")
_DETECTION: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_KEYS: Final = frozenset({"detection", "severity", "title", "resource", "observedAt",
                          "fingerprint", "evidence", "identity"})


@dataclass(frozen=True, slots=True)
class FindingsLoad:
    observations: tuple[Observation, ...]
    errors: tuple[str, ...]
    total: int

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_findings(text: str, source: str = "<findings>") -> FindingsLoad:
    """Parse and check every item; never raises on bad input."""
    try:
        document = json.loads(text)
    except ValueError as error:
        return FindingsLoad((), (f"{source}: not valid JSON: {error}",), 0)
    items = document.get("findings") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return FindingsLoad((), (f"{source}: expected {{\"findings\": [...]}} or a JSON array",),
                            0)
    if len(items) > MAX_FINDINGS:
        return FindingsLoad((), (f"{source}: {len(items)} findings; at most {MAX_FINDINGS} per "
                                 "file",), len(items))
    observations = []
    errors: list[str] = []
    for index, item in enumerate(items):
        problems = _check(item)
        if problems:
            errors.extend(f"{source}: findings[{index}].{p}" if not p.startswith(":") else
                          f"{source}: findings[{index}]{p}" for p in problems)
            continue
        observations.append(_observation(item))
    return FindingsLoad(tuple(observations) if not errors else (), tuple(errors), len(items))


def _check(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return [f": expected an object, got {type(item).__name__}"]
    problems = [f"{key}: unknown key (allowed: {', '.join(sorted(_KEYS))})"
                for key in sorted(set(item) - _KEYS, key=str)]
    detection = item.get("detection")
    if not isinstance(detection, str) or not _DETECTION.fullmatch(detection):
        problems.append(f"detection: {_short(detection)} is not a detection id")
    if item.get("severity") not in SEVERITIES:
        problems.append(f"severity: {_short(item.get('severity'))} is not one of "
                        f"{', '.join(SEVERITIES)}")
    for key in ("title", "resource"):
        if not isinstance(item.get(key), str) or not item[key]:
            problems.append(f"{key}: required text, got {_short(item.get(key))}")
    observed = item.get("observedAt")
    try:
        when = datetime.fromisoformat(observed) if isinstance(observed, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        problems.append(f"observedAt: {_short(observed)} is not an ISO 8601 time with a time "
                        "zone")
    if "evidence" in item and not isinstance(item["evidence"], dict):
        problems.append("evidence: expected an object")
    identity = item.get("identity")
    if identity is not None and (not isinstance(identity, list)
                                 or not all(isinstance(i, str) for i in identity)):
        problems.append("identity: expected a list of strings")
    fingerprint = item.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str)
                                    or not _FINGERPRINT.fullmatch(fingerprint)):
        problems.append(f"fingerprint: {_short(fingerprint)} is not 32 lower-case hex digits")
    if not problems and identity is not None and fingerprint is not None:
        computed = _finding(item).fingerprint
        if computed != fingerprint:
            problems.append(f"fingerprint: {fingerprint} does not match the identity given "
                            f"(computed {computed})")
    return problems


def _finding(item: dict[str, Any]) -> Finding:
    return Finding(item["detection"], item["severity"], item["title"], item["resource"],
                   datetime.fromisoformat(item["observedAt"]), dict(item.get("evidence") or {}),
                   tuple(item.get("identity") or ()))


def _observation(item: dict[str, Any]) -> Observation:
    finding = _finding(item)
    if item.get("identity") is None and item.get("fingerprint"):
        return Observation(finding, item["fingerprint"])
    return Observation.of(finding)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."
