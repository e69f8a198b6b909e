"""The app's functions, indexed once: ``FunctionApp.get_functions()`` may run only once per app
(it remembers names and refuses a second pass), so every test module imports them from here."""

from __future__ import annotations

import json
from typing import Any

from function_app import app

INDEXED = {f.get_function_name(): f for f in app.get_functions()}
FUNCTIONS = {name: f.get_user_function() for name, f in INDEXED.items()}
BINDINGS: dict[str, list[dict[str, Any]]] = {
    name: json.loads(f.get_function_json())["bindings"] for name, f in INDEXED.items()}
