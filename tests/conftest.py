"""Shared pytest configuration: the Azurite session fixture lives in tests/fixtures/azurite.py."""

import pytest

pytest_plugins = ["tests.fixtures.azurite"]


def pytest_addoption(parser: "pytest.Parser") -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from the current output (review the diff!)")
