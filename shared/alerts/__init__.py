"""Alerting core: routing rules, deduplication decisions, message rendering and escaping.

Pure code: no Azure SDK, no network, no files. The service (``shared.services.alerting``) drives
it with the ports in :mod:`shared.alerts.ports`; adapters in ``shared.adapters`` implement them.
"""
