"""Fixtures for the alerting tests: one HTTPS fake of ACS Email + Teams per module, real
channel adapters with fast retries, the dedup state on Azurite, a settable clock, findings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.acs_email import AcsEmailChannel
from shared.adapters.alert_state import TableAlertState
from shared.adapters.teams_webhook import TeamsWebhookChannel
from shared.alerts.config import AlertConfig
from shared.alerts.config_loader import load_alert_config
from shared.domain.findings import Finding
from shared.local.azurite import Azurite
from shared.services.alerting import AlertRouter
from tests.fakes.notify import FakeNotify

SUB = "11111111-1111-1111-1111-111111111111"
VM = (f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.Compute/"
      "virtualMachines/vm-web-01")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # a Sunday, noon UTC

CONFIG_YAML = """
channels:
  email:
    to: [secops@contoso.com]
  teams: {}
routes:
  - name: everything by email
    email: true
  - name: serious to teams
    min_severity: medium
    teams: true
suppression:
  default: 24h
  detections:
    drift: 6h
resolution:
  after: 1h
"""


class StaticCredential:
    """A TokenCredential that always hands out the fake's token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def config_from(text: str = CONFIG_YAML) -> AlertConfig:
    loaded = load_alert_config(text, "test.yaml")
    assert loaded.config is not None, [str(e) for e in loaded.errors]
    return loaded.config


def make_finding(detection: str = "risky_region", severity: str = "high", *,
                 resource: str = VM, title: str = "vm-web-01 talked to a risky region",
                 reached: int = 0, identity: tuple[str, ...] = ("203.0.113.7",),
                 **evidence: Any) -> Finding:
    if reached:
        evidence["reached"] = [f"10.0.0.{i}" for i in range(reached)]
    return Finding(detection, severity, title, resource, T0, evidence, identity)


@pytest.fixture(scope="module")
def notify_server() -> Iterator[FakeNotify]:
    with FakeNotify() as fake:
        yield fake


@pytest.fixture
def fake(notify_server: FakeNotify) -> Iterator[FakeNotify]:
    notify_server.reset()
    yield notify_server
    notify_server.reset()


def email_channel(fake: FakeNotify) -> AcsEmailChannel:
    return AcsEmailChannel.from_connection_string(
        fake.acs_connection_string, "alerts@contoso.com", ca_bundle=fake.ca_path,
        polling_interval=0.01, retry_backoff_factor=0.01)


def teams_channel(fake: FakeNotify, **kwargs: Any) -> TeamsWebhookChannel:
    kwargs.setdefault("retry_backoff_factor", 0.01)
    kwargs.setdefault("retry_total", 2)
    return TeamsWebhookChannel(fake.webhook_url, ca_bundle=fake.ca_path, **kwargs)


@pytest.fixture
def email(fake: FakeNotify) -> Iterator[AcsEmailChannel]:
    channel = email_channel(fake)
    yield channel
    channel.close()


@pytest.fixture
def teams(fake: FakeNotify) -> Iterator[TeamsWebhookChannel]:
    channel = teams_channel(fake)
    yield channel
    channel.close()


@pytest.fixture
def state(azurite: Azurite, table_name: str) -> Iterator[TableAlertState]:
    with TableAlertState.from_connection_string(azurite.connection_string, table_name) as store:
        yield store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router(state: TableAlertState, email: AcsEmailChannel, teams: TeamsWebhookChannel,
           clock: Clock) -> AlertRouter:
    return AlertRouter(config_from(), state, email, teams, clock=clock)
