"""zts core package: domain model, policy, analytics, adapters and services."""

__version__ = "0.1.0"
