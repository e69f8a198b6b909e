"""Shared pytest configuration: the Azurite session fixture lives in tests/fixtures/azurite.py."""

import os
import tempfile

import pytest

# The KQL translation cache of this test run, not the user's (shared/adapters/kql_translation.py)
os.environ["ZTS_KQL_CACHE"] = tempfile.mkdtemp(prefix="zts-test-kql-cache-")

pytest_plugins = ["tests.fixtures.azurite"]


def pytest_addoption(parser: "pytest.Parser") -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output (review the diff!)")
