"""Shared pytest configuration: the Azurite session fixture lives in tests/fixtures/azurite.py."""

pytest_plugins = ["tests.fixtures.azurite"]
