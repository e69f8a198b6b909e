"""Durations in the alert configuration: ``90s``, ``30m``, ``24h``, ``7d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

MAX_DURATION: Final = timedelta(days=90)
_PART: Final = re.compile(r"(\d{1,6})([smhd])")
_WHOLE: Final = re.compile(r"(?:\d{1,6}[smhd])+")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """The duration written as ``text``; ValueError with the reason when it is not one."""
    compact = text.strip().lower()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration: write a number and a unit s/m/h/d, "
                         "e.g. 30m, 24h, 7d or 1h30m")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    value = timedelta(seconds=seconds)
    if value <= timedelta(0):
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    if value > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return value


def format_duration(value: timedelta) -> str:
    """``timedelta(hours=26)`` -> ``1d2h``; the inverse of :func:`parse_duration` for whole
    seconds."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
