"""The ``ZTS_EMAIL_RECIPIENTS`` setting, split without importing the configuration models (the
settings module reads it at cold start)."""

from __future__ import annotations

from typing import Final

#: The app setting that lists the alert email recipients.
RECIPIENTS_SETTING: Final = "ZTS_EMAIL_RECIPIENTS"


def parse_recipients(value: str) -> tuple[str, ...]:
    """The addresses of :data:`RECIPIENTS_SETTING`: separated by commas or semicolons, blanks
    ignored (checked when a configuration is built with them)."""
    return tuple(part.strip() for part in value.replace(";", ",").split(",") if part.strip())
