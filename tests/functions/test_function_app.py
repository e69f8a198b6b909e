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
