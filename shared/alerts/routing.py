"""Where a finding goes: channels and recipients from the routes, and whether it waits for the
digest (low severities always; the quiet-hours severities during quiet hours)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.alerts.config import AlertConfig, QuietHours

__all__ = ["Targets", "digest_bound", "in_quiet_hours", "targets_for"]


@dataclass(frozen=True, slots=True)
class Targets:
    """The union of every matching route: email recipients (sorted, de-duplicated without regard
    to case) and whether Teams gets it."""

    email: tuple[str, ...] = ()
    teams: bool = False
    routes: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        return (*(("email",) if self.email else ()), *(("teams",) if self.teams else ()))


def targets_for(detection: str, severity: str, config: AlertConfig) -> Targets:
    """Every route that matches contributes; a finding no route matches goes nowhere."""
    email: dict[str, str] = {}
    teams = False
    names = []
    for route in config.routes:
        if not route.matches(detection, severity):
            continue
        names.append(route.name)
        if config.email_enabled:
            for address in route.email:
                email.setdefault(address.lower(), address)
        teams = teams or (route.teams and config.teams_enabled)
    return Targets(tuple(email[k] for k in sorted(email)), teams, tuple(names))


def in_quiet_hours(now: datetime, quiet: QuietHours | None) -> bool:
    """True when ``now`` falls in the quiet hours (local time of their time zone; a window that
    spans midnight, 22:00-07:00, is handled)."""
    if quiet is None:
        return False
    zone = UTC if quiet.timezone == "UTC" else ZoneInfo(quiet.timezone)
    local = now.astimezone(zone).time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def digest_bound(severity: str, now: datetime, config: AlertConfig) -> bool:
    """Whether a finding of this severity waits for the digest instead of going out alone.
    High and critical never wait (the schema does not let quiet hours or the digest hold them)."""
    if severity in config.digest_severities:
        return True
    quiet = config.quiet_hours
    return quiet is not None and severity in quiet.hold and in_quiet_hours(now, quiet)
