"""The channel adapters through the real clients (EmailClient, azure-core PipelineClient) against
the HTTPS fake: documented request shapes, retries that honour Retry-After, failures reported
without secrets."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from shared.adapters.acs_email import AcsEmailChannel
from shared.adapters.teams_webhook import TeamsWebhookChannel
from shared.alerts.ports import DeliveryFailed
from shared.alerts.render_card import alert_card
from shared.alerts.render_email import EmailContent, alert_email
from tests.alerts.conftest import StaticCredential, teams_channel
from tests.alerts.test_render import item
from tests.fakes.notify import WEBHOOK_SECRET, FakeNotify, email_shape_problems

CONTENT = EmailContent("subject", "plain", "<p>html</p>")


def op() -> str:
    return str(uuid.uuid4())


def test_email_with_connection_string_is_hmac_signed_and_documented(
        fake: FakeNotify, email: AcsEmailChannel) -> None:
    operation = op()
    rendered = alert_email(item(), "do x")
    assert email.send(("secops@contoso.com", "soc@contoso.com"), rendered,
                      operation_id=operation) == operation
    (sent,) = fake.emails
    assert sent == {"senderAddress": "alerts@contoso.com",
                    "recipients": {"to": [{"address": "secops@contoso.com"},
                                          {"address": "soc@contoso.com"}]},
                    "content": {"subject": rendered.subject, "plainText": rendered.plain_text,
                                "html": rendered.html},
                    "userEngagementTrackingDisabled": True, "_operationId": operation}
    post, *polls = fake.requests
    assert (post.method, post.path, post.query["api-version"]) == ("POST", "/emails:send",
                                                                   "2023-03-31")
    assert post.headers["authorization"].startswith("HMAC-SHA256 ")  # verified by the fake
    assert post.headers["operation-id"] == operation
    assert [p.path for p in polls] == [f"/emails/operations/{operation}"] * 2  # Running, Succeeded
    assert fake.problems == []


def test_email_with_a_token_credential(fake: FakeNotify) -> None:
    channel = AcsEmailChannel.from_endpoint(fake.url, StaticCredential(), "alerts@contoso.com",
                                            ca_bundle=fake.ca_path, polling_interval=0.01)
    try:
        channel.send(("secops@contoso.com",), CONTENT, operation_id=op())
    finally:
        channel.close()
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer fake-token"}


def test_email_429_retry_after_is_honoured(fake: FakeNotify, email: AcsEmailChannel) -> None:
    fake.add_fault("POST", "/emails:send", 429, headers={"Retry-After": "1"})
    fake.add_fault("POST", "/emails:send", 503)
    started = time.monotonic()
    email.send(("secops@contoso.com",), CONTENT, operation_id=op())
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in fake.requests if r.method == "POST"] == [429, 503, 202]
    assert len(fake.emails) == 1


def test_email_failures_are_delivery_failures(fake: FakeNotify, email: AcsEmailChannel) -> None:
    fake.add_fault("POST", "/emails:send", 500, times=10)
    with pytest.raises(DeliveryFailed, match=r"HTTP 500") as failed:
        email.send(("secops@contoso.com",), CONTENT, operation_id=op())
    assert failed.value.status == 500 and fake.count("POST", "/emails:send") == 4  # 1 + 3 retries
    fake.reset()
    fake.fail_recipients.add("bounce@contoso.com")
    with pytest.raises(DeliveryFailed, match="send operation failed InvalidRecipient"):
        email.send(("bounce@contoso.com",), CONTENT, operation_id=op())
    fake.reset()
    fake.add_fault("POST", "/emails:send", 400)
    with pytest.raises(DeliveryFailed, match="HTTP 400"):
        email.send(("secops@contoso.com",), CONTENT, operation_id=op())
    assert fake.count("POST", "/emails:send") == 1  # a 400 is not retried


def test_fake_checks_the_documented_email_shape() -> None:
    assert email_shape_problems({"senderAddress": "a@b.co", "recipients": {"to": []},
                                 "content": {"subject": "s"}, "sender": "x"}) == [
        "unknown property 'sender'", "content needs plainText or html",
        "recipients.to needs at least one address"]
    assert email_shape_problems({"senderAddress": "a@b.co", "content": {"subject": "s",
                                                                        "plainText": "p"},
                                 "recipients": {"to": [{"email": "a@b.co"}]}}) == [
        'recipients.to[0] must be {"address": ..., "displayName"?: ...}']


def test_teams_post_retries_and_accepts(fake: FakeNotify) -> None:
    teams = teams_channel(fake, retry_total=3)
    card = alert_card(item(), "do x")
    fake.add_fault("POST", "/invoke", 503)
    fake.add_fault("POST", "/invoke", drop=True)  # connection closed without an answer
    fake.add_fault("POST", "/invoke", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    teams.post(card)
    teams.close()
    assert time.monotonic() - started >= 1.0
    assert fake.cards == [card]
    posts = [r for r in fake.requests if r.method == "POST"]
    assert [r.status for r in posts] == [503, 0, 429, 202]
    assert posts[-1].headers["content-type"].startswith("application/json")
    assert posts[-1].query["sig"] == WEBHOOK_SECRET and posts[-1].query["sv"] == "1.0"


def test_teams_failures_never_reveal_the_webhook_url(
        fake: FakeNotify, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channel = teams_channel(fake)
    outputs = [repr(channel)]
    fake.add_fault("POST", "/invoke", 500, times=10,
                   body={"error": {"message": f"echo {fake.webhook_url}"}})
    with pytest.raises(DeliveryFailed) as failed:
        channel.post(alert_card(item(), "x"))
    outputs.append(str(failed.value))
    assert "HTTP 500" in str(failed.value) and fake.count("POST", "/invoke") == 3
    fake.reset()
    fake.add_fault("POST", "/invoke", 413)
    with pytest.raises(DeliveryFailed, match="HTTP 413"):
        channel.post(alert_card(item(), "x"))
    channel.close()
    port = fake.url.rsplit(":", 1)[1]
    closed = TeamsWebhookChannel(fake.webhook_url.replace(port, "1"), retry_total=1,
                                 retry_backoff_factor=0.01)
    with pytest.raises(DeliveryFailed, match="could not be reached") as unreachable:
        closed.post(alert_card(item(), "x"))
    closed.close()
    outputs.append(str(unreachable.value))
    assert any("POST <redacted webhook>" in r.getMessage() for r in caplog.records)  # logged...
    outputs.append(caplog.text)
    for text in outputs:  # ...but never the signature
        assert WEBHOOK_SECRET not in text, text


def test_teams_rejections(fake: FakeNotify) -> None:
    wrong = TeamsWebhookChannel(fake.webhook_url.replace(WEBHOOK_SECRET, "guess"),
                                ca_bundle=fake.ca_path, retry_backoff_factor=0.01)
    with pytest.raises(DeliveryFailed, match="HTTP 401 Unauthorized") as failed:
        wrong.post(alert_card(item(), "x"))
    wrong.close()
    assert failed.value.status == 401 and fake.count("POST", "/invoke") == 1
    with pytest.raises(ValueError, match="must be an https URL") as bad:
        TeamsWebhookChannel("http://prod-01.logic.azure.com/workflows/x?sig=topsecret")
    assert "topsecret" not in str(bad.value)


def test_a_retry_after_longer_than_the_bound_gives_up(fake: FakeNotify) -> None:
    channel = teams_channel(fake, max_retry_after=5)
    fake.add_fault("POST", "/invoke", 429, headers={"Retry-After": "3600"})
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="HTTP 429"):
        channel.post(alert_card(item(), "x"))
    channel.close()
    assert time.monotonic() - started < 5 and fake.count("POST", "/invoke") == 1
