"""The detection catalog (``kql/catalog.yaml``) and the parameters each query receives.

The catalog says, per detection: id, title, default severity, description, remediation, the
``.kql`` file, and which parameters the query expects beyond the window. Parameter *values* are
built here from the configuration and always become escaped literals (:mod:`shared.analytics.kql`);
a catalog naming an unknown parameter is rejected when it is loaded, not when a query fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import yaml

from shared.analytics.config import AnalyticsConfig
from shared.analytics.enrichment import bounds
from shared.analytics.kql import WINDOW_DECLARATION, ParamValue, TableValue, preamble
from shared.analytics.query import Window
from shared.domain.findings import SEVERITIES

DETECTION_IDS: Final = ("risky_region", "malicious_flow", "azure_service", "cross_subscription",
                        "blast_radius")
WINDOW_PARAMS: Final = ("WindowStart", "WindowEnd")
KNOWN_PARAMS: Final = frozenset({"RiskyCountries", "ThreatRanges", "AllowedPairs"})


class CatalogError(ValueError):
    """The catalog file is malformed (a packaging error, not user input)."""


@dataclass(frozen=True, slots=True)
class Detection:
    id: str
    title: str
    severity: str
    description: str
    remediation: str
    query: str  # file name of the .kql, relative to the catalog
    parameters: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "severity": self.severity,
                "description": self.description, "remediation": self.remediation,
                "query": self.query, "parameters": list(self.parameters)}


@dataclass(frozen=True, slots=True)
class Catalog:
    detections: tuple[Detection, ...]

    def get(self, detection_id: str) -> Detection:
        for detection in self.detections:
            if detection.id == detection_id:
                return detection
        raise KeyError(detection_id)

    def order(self, detection_id: str) -> int:
        return [d.id for d in self.detections].index(detection_id)


def parse_catalog(text: str) -> Catalog:
    """Parse and check the catalog: every known detection exactly once, known severities and
    parameters, no missing field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CatalogError(f"catalog is not valid YAML: {err}") from err
    entries = document.get("detections") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CatalogError("catalog must hold a 'detections' list")
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CatalogError(f"detections[{index}] is not a mapping")
        fields = {}
        for name in ("id", "title", "severity", "description", "remediation", "query"):
            value = entry.get(name)
            if not isinstance(value, str) or not value.strip():
                raise CatalogError(f"detections[{index}].{name} is missing or empty")
            fields[name] = value.strip()
        extra = set(entry) - {"id", "title", "severity", "description", "remediation", "query",
                              "parameters"}
        if extra:
            raise CatalogError(f"detections[{index}]: unknown keys {sorted(extra)}")
        if fields["severity"] not in SEVERITIES:
            raise CatalogError(f"detections[{index}].severity {fields['severity']!r} unknown")
        params = entry.get("parameters") or []
        if not isinstance(params, list) or not set(params) <= KNOWN_PARAMS:
            raise CatalogError(f"detections[{index}].parameters must be a subset of "
                               f"{sorted(KNOWN_PARAMS)}")
        out.append(Detection(**fields, parameters=tuple(params)))
    ids = [d.id for d in out]
    if sorted(ids) != sorted(DETECTION_IDS):
        raise CatalogError(f"catalog must define exactly {list(DETECTION_IDS)}, found {ids}")
    return Catalog(tuple(out))


def expand_pairs(pairs: Iterable[tuple[str, str]],
                 subscriptions: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Allowed subscription pairs with ``*`` expanded over the known subscriptions (lower case).
    A pair of a subscription with itself is dropped (not a boundary)."""
    known = sorted({s.lower() for s in subscriptions})
    out: set[tuple[str, str]] = set()
    for src, dst in pairs:
        for s in known if src == "*" else [src.lower()]:
            for d in known if dst == "*" else [dst.lower()]:
                if s != d:
                    out.add((s, d))
    return tuple(sorted(out))


def parameter_values(detection: Detection, config: AnalyticsConfig, window: Window | None,
                     subscriptions: Iterable[str]) -> list[tuple[str, ParamValue]]:
    """The window (unless None) plus the detection's declared parameters, built from the
    configuration."""
    values: list[tuple[str, ParamValue]] = [] if window is None else [
        ("WindowStart", window.start), ("WindowEnd", window.end)]
    for name in detection.parameters:
        if name == "RiskyCountries":
            values.append((name, TableValue((("Country", "string"),),
                                            tuple((c,) for c in config.risky_countries))))
        elif name == "ThreatRanges":
            rows = tuple((*bounds(t.network), t.threat_type, t.description)
                         for t in config.threats)
            values.append((name, TableValue((("Lo", "long"), ("Hi", "long"),
                                             ("ThreatType", "string"),
                                             ("Description", "string")), rows)))
        elif name == "AllowedPairs":
            pairs = expand_pairs(config.allowed_pairs, subscriptions)
            values.append((name, TableValue((("SrcSubscription", "string"),
                                             ("DestSubscription", "string")), pairs)))
    return values


def render_query(detection: Detection, body: str, config: AnalyticsConfig, window: Window | None,
                 subscriptions: Iterable[str]) -> str:
    """The full query text: escaped parameter lets, then the ``.kql`` body unchanged. With
    ``window`` None the window is declared as query parameters instead (the engine binds it:
    the text is then the same for every window)."""
    lets = preamble(parameter_values(detection, config, window, subscriptions))
    return (WINDOW_DECLARATION if window is None else "") + lets + body
