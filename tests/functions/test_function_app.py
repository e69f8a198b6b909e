"""The Functions app indexes and its triggers answer, called with real azure.functions objects."""

from __future__ import annotations

import json

import azure.functions as func

from tests.functions.indexed import INDEXED as FUNCTIONS


def test_app_indexes_health() -> None:
    health = FUNCTIONS["health"]
    assert health.is_http_function()
    bindings = json.loads(health.get_function_json())["bindings"]
    trigger = next(b for b in bindings if b["type"] == "httpTrigger")
    assert trigger["authLevel"] == "ANONYMOUS"
    assert trigger["methods"] == ["GET"]


def test_health_answers_without_secrets() -> None:
    call = FUNCTIONS["health"].get_user_function()
    response = call(func.HttpRequest(method="GET", url="/api/health", body=b""))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {"status": "ok", "service": "zts",
                                               "version": "0.1.0"}


def test_every_non_health_http_function_requires_a_key() -> None:
    for name, function in FUNCTIONS.items():
        if function.is_http_function() and name != "health":
            bindings = json.loads(function.get_function_json())["bindings"]
            assert all(b.get("authLevel") != "ANONYMOUS" for b in bindings), name


def test_local_settings_sample_lists_every_setting_and_no_secret() -> None:
    from pathlib import Path

    from shared.settings import SETTING_NAMES

    root = Path(__file__).resolve().parents[2]
    values = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    assert set(SETTING_NAMES) <= set(values)
    for name, value in values.items():
        assert "AccountKey=" not in value and "sig=" not in value, name


def test_host_json_retries_queue_messages_then_poisons_them() -> None:
    from pathlib import Path

    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert host["extensionBundle"]["version"] == "[4.0.0, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5 and queues["messageEncoding"] == "base64"
