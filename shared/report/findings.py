"""Findings for the report: from :class:`Finding` objects or from findings JSON files (pure).

A findings file is ``{"findings": [...]}`` (or a bare list) whose items are ``Finding.as_dict()``
(``detection, severity, title, resource, observedAt, fingerprint, evidence``); the analyze
output's spelling (``summary`` for the title, no ``resource``) is accepted too. Every malformed
item is reported with its index and field, and a file with any error is refused whole: a report
that silently drops a finding would mislead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from shared.domain.findings import SEVERITIES, Finding
from shared.report.flows import iso_time

PORTAL_RESOURCE: Final = "https://portal.azure.com/#@/resource"
MAX_FINDINGS: Final = 50_000


@dataclass(frozen=True, slots=True)
class ReportFinding:
    detection: str
    severity: str
    title: str
    resource: str
    observed_at: str | None  # ISO 8601 UTC
    fingerprint: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, finding: Finding) -> ReportFinding:
        return cls(finding.detection, finding.severity, finding.title, finding.resource_id,
                   iso_time(finding.observed_at), finding.fingerprint, dict(finding.evidence))


@dataclass(frozen=True, slots=True)
class FindingsLoad:
    findings: tuple[ReportFinding, ...]
    errors: tuple[str, ...]


def portal_url(resource_id: str) -> str | None:
    """The Azure portal page of an ARM resource id; None for anything that is not one."""
    text = resource_id.strip()
    if not text.lower().startswith("/subscriptions/") or any(c.isspace() for c in text):
        return None
    return PORTAL_RESOURCE + quote(text, safe="/-_.()~")


def as_report_findings(items: Iterable[Finding | ReportFinding]) -> list[ReportFinding]:
    return [i if isinstance(i, ReportFinding) else ReportFinding.of(i) for i in items]


def parse_findings_document(text: str, source: str = "<findings>") -> FindingsLoad:
    """Parse a findings file; never raises on bad input."""
    try:
        document = json.loads(text)
    except ValueError as error:
        return FindingsLoad((), (f"{source}: not valid JSON: {error}",))
    items = document.get("findings") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return FindingsLoad((), (f'{source}: expected {{"findings": [...]}} or a JSON array',))
    if len(items) > MAX_FINDINGS:
        return FindingsLoad((), (f"{source}: {len(items)} findings; at most {MAX_FINDINGS}",))
    found: list[ReportFinding] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        parsed = _item(item)
        if isinstance(parsed, ReportFinding):
            found.append(parsed)
        else:
            errors.extend(f"{source}: findings[{index}]{problem}" for problem in parsed)
    return FindingsLoad(tuple(found) if not errors else (), tuple(errors))


def _item(item: Any) -> ReportFinding | list[str]:
    if not isinstance(item, dict):
        return [f": expected an object, got {type(item).__name__}"]
    problems = []
    detection = item.get("detection")
    if not isinstance(detection, str) or not detection.strip():
        problems.append(".detection: required text")
    severity = item.get("severity")
    if severity not in SEVERITIES:
        problems.append(f".severity: {_short(severity)} is not one of {', '.join(SEVERITIES)}")
    title = item.get("title", item.get("summary"))
    if not isinstance(title, str):
        problems.append(".title: required text (or summary)")
    resource = item.get("resource", "")
    if not isinstance(resource, str):
        problems.append(".resource: expected text")
    observed = item.get("observedAt")
    when = None
    if observed is not None:
        when = iso_time(observed) if isinstance(observed, str) else None
        if when is None or not _has_zone(str(observed)):
            problems.append(f".observedAt: {_short(observed)} is not an ISO 8601 time with a "
                            "time zone")
    evidence = item.get("evidence", {})
    if not isinstance(evidence, dict):
        problems.append(".evidence: expected an object")
    fingerprint = item.get("fingerprint", "")
    if not isinstance(fingerprint, str):
        problems.append(".fingerprint: expected text")
    if problems:
        return problems
    return ReportFinding(str(detection), str(severity), str(title), str(resource), when,
                         str(fingerprint), dict(evidence))


def _has_zone(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def stable_text(value: Any) -> str:
    """A canonical text of JSON-like data, for tie-breaking sorts."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types cannot be sorted
        return repr(value)


def finding_rows(findings: Iterable[ReportFinding]) -> list[dict[str, Any]]:
    """The findings table: most severe first, then newest, then fingerprint."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    ordered = sorted(findings, key=lambda f: (f.detection, f.fingerprint, f.title, f.resource,
                                              stable_text(f.evidence)))
    ordered.sort(key=lambda f: f.observed_at or "", reverse=True)  # stable: ISO UTC sorts
    ordered.sort(key=lambda f: rank[f.severity], reverse=True)
    return [{
        "detection": f.detection, "severity": f.severity, "title": f.title,
        "resource": f.resource, "portal": portal_url(f.resource),
        "observedAt": f.observed_at, "fingerprint": f.fingerprint,
        "evidence": dict(f.evidence),
    } for f in ordered]

