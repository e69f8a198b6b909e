"""The alert routing configuration: which findings go where, how often, and when.

A YAML file (see ``docs/alerts.md``) is checked by the closed pydantic schema below (unknown keys
are errors) and turned into the frozen :class:`AlertConfig` the rest of the core reads. Secrets
never live here: the Teams webhook URL and the email sender come from settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.alerts.duration import parse_duration
from shared.domain.findings import SEVERITIES

__all__ = [
    "CHANNELS",
    "KNOWN_DETECTIONS",
    "AlertConfig",
    "AlertConfigSpec",
    "QuietHours",
    "Route",
    "severity_rank",
]

CHANNELS: Final = ("email", "teams")
KNOWN_DETECTIONS: Final = frozenset({
    "drift", "risky_region", "malicious", "cross_subscription", "blast_radius",
    "azure_service", "lateral_movement",
})
"""Detections zts ships; a route naming another one gets a warning (a typo never matches)."""

MAX_RECIPIENTS: Final = 50
_EMAIL: Final = re.compile(r"[^@\s<>\"',;()\[\]\\]+@[^@\s<>\"',;()\[\]\\]+\.[A-Za-z0-9-]{2,}")
_CLOCK: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DETECTION: Final = re.compile(r"\*|[a-z][a-z0-9_.-]{0,63}")
_TIMEZONE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}")

Severity = Literal["informational", "low", "medium", "high", "critical"]
Holdable = Literal["informational", "low", "medium"]


def _holdable(*values: Holdable) -> list[Holdable]:
    return list(values)


def severity_rank(severity: str) -> int:
    """0 (informational) .. 4 (critical); -1 for anything else."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


# -- schema (what the file may say) ----------------------------------------------------------


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _clock(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day: write HH:MM (24-hour), in quotes")
    return value


def _detection(value: str) -> str:
    if not _DETECTION.fullmatch(value):
        raise ValueError(f"{value!r} is not a detection id (lower-case letters, digits, _ . -) "
                         "or '*'")
    return value


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if value != "UTC":
        try:
            if not _TIMEZONE.fullmatch(value):
                raise ValueError
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") \
                from None
    return value


EmailAddress = Annotated[str, AfterValidator(_email)]
Duration = Annotated[str, AfterValidator(_duration)]
ClockTime = Annotated[str, AfterValidator(_clock)]
DetectionId = Annotated[str, AfterValidator(_detection)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmailChannelSpec(_Closed):
    to: list[EmailAddress] = Field(default_factory=list, max_length=MAX_RECIPIENTS)


class TeamsChannelSpec(_Closed):
    enabled: bool = True


class ChannelsSpec(_Closed):
    email: EmailChannelSpec | None = None
    teams: TeamsChannelSpec | None = None


class RouteSpec(_Closed):
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    detections: list[DetectionId] = Field(default_factory=lambda: ["*"], min_length=1)
    min_severity: Severity | None = None
    severities: list[Severity] | None = Field(default=None, min_length=1)
    email: bool | Annotated[list[EmailAddress], Field(min_length=1,
                                                       max_length=MAX_RECIPIENTS)] = False
    teams: bool = False

    @model_validator(mode="after")
    def _one_severity_filter(self) -> RouteSpec:
        if self.min_severity is not None and self.severities is not None:
            raise ValueError("give either min_severity or severities, not both")
        if self.email is False and not self.teams:
            raise ValueError("the route sends nowhere: set email and/or teams")
        return self


class SuppressionSpec(_Closed):
    default: Duration = "24h"
    detections: dict[DetectionId, Duration] = Field(default_factory=dict)


class QuietHoursSpec(_Closed):
    start: ClockTime
    end: ClockTime
    timezone: TimeZoneName = "UTC"
    hold: list[Holdable] = Field(
        default_factory=lambda: _holdable("informational", "low", "medium"))

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursSpec:
        if self.start == self.end:
            raise ValueError("quiet hours start and end at the same time")
        return self


class DigestSpec(_Closed):
    severities: list[Holdable] = Field(
        default_factory=lambda: _holdable("informational", "low"))
    max_items: Annotated[int, Field(ge=1, le=200)] = 50


class ResolutionSpec(_Closed):
    notify: bool = True
    after: Duration = "1h"


class AlertConfigSpec(_Closed):
    version: Literal[1] = 1
    channels: ChannelsSpec
    routes: list[RouteSpec] = Field(min_length=1, max_length=200)
    suppression: SuppressionSpec = Field(default_factory=SuppressionSpec)
    quiet_hours: QuietHoursSpec | None = None
    digest: DigestSpec = Field(default_factory=DigestSpec)
    resolution: ResolutionSpec = Field(default_factory=ResolutionSpec)
    remediation: dict[DetectionId, Text] = Field(default_factory=dict)


# -- the model the core reads ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Findings of ``detections`` (``"*"``: all) at ``severities`` go to ``email`` (recipients)
    and/or ``teams``."""

    name: str
    detections: frozenset[str]
    severities: frozenset[str]
    email: tuple[str, ...]
    teams: bool

    def matches(self, detection: str, severity: str) -> bool:
        return severity in self.severities and ("*" in self.detections
                                                or detection in self.detections)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """``start``..``end`` local time in ``timezone`` (may span midnight); severities in ``hold``
    wait for the digest after the quiet hours end."""

    start: time
    end: time
    timezone: str
    hold: frozenset[str]


@dataclass(frozen=True, slots=True)
class AlertConfig:
    routes: tuple[Route, ...]
    email_enabled: bool
    teams_enabled: bool
    default_recipients: tuple[str, ...] = ()
    default_window: timedelta = timedelta(hours=24)
    windows: dict[str, timedelta] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    digest_severities: frozenset[str] = frozenset({"informational", "low"})
    digest_max_items: int = 50
    notify_resolution: bool = True
    resolve_after: timedelta = timedelta(hours=1)
    remediation: dict[str, str] = field(default_factory=dict)

    def window(self, detection: str) -> timedelta:
        """How long a sent alert suppresses repeats of the same fingerprint."""
        return self.windows.get(detection, self.default_window)

    @classmethod
    def from_spec(cls, spec: AlertConfigSpec) -> AlertConfig:
        default_to = tuple(spec.channels.email.to) if spec.channels.email else ()
        routes = []
        for index, route in enumerate(spec.routes):
            severities: frozenset[str]
            if route.severities is not None:
                severities = frozenset(route.severities)
            else:
                floor = severity_rank(route.min_severity or "informational")
                severities = frozenset(s for s in SEVERITIES if severity_rank(s) >= floor)
            email: tuple[str, ...] = ()
            if route.email is True:
                email = default_to
            elif isinstance(route.email, list):
                email = tuple(route.email)
            routes.append(Route(route.name or f"routes[{index}]", frozenset(route.detections),
                                severities, email, route.teams))
        quiet = None
        if spec.quiet_hours is not None:
            q = spec.quiet_hours
            quiet = QuietHours(time.fromisoformat(q.start), time.fromisoformat(q.end), q.timezone,
                               frozenset(q.hold))
        return cls(
            routes=tuple(routes),
            email_enabled=spec.channels.email is not None,
            default_recipients=default_to,
            teams_enabled=spec.channels.teams is not None and spec.channels.teams.enabled,
            default_window=parse_duration(spec.suppression.default),
            windows={d: parse_duration(w) for d, w in spec.suppression.detections.items()},
            quiet_hours=quiet,
            digest_severities=frozenset(spec.digest.severities),
            digest_max_items=spec.digest.max_items,
            notify_resolution=spec.resolution.notify,
            resolve_after=parse_duration(spec.resolution.after),
            remediation=dict(spec.remediation),
        )
