"""The ``zts alerts`` commands: ``check`` a configuration, ``test`` a channel, ``route`` findings.

Settings (environment), the same the Functions app reads:

* ``ZTS_ACS_ENDPOINT`` (with ``DefaultAzureCredential``: managed identity in Azure) or
  ``ZTS_ACS_CONNECTION_STRING``, and ``ZTS_EMAIL_SENDER`` (From address of a verified domain);
* ``ZTS_EMAIL_RECIPIENTS``: addresses for a configuration whose ``channels.email`` lists none;
* ``ZTS_TEAMS_WEBHOOK_URL``: the Workflows webhook (a secret: a Key Vault reference in Azure; never
  printed);
* ``ZTS_ALERT_STATE_CONNECTION_STRING`` or ``ZTS_STORAGE_TABLE_ENDPOINT`` (with the identity), and
  ``ZTS_ALERT_TABLE`` (default ``ztsAlerts``): where dedup state lives;
* ``ZTS_CA_BUNDLE``: an extra CA to trust (tests, TLS-inspecting proxies);
  ``ZTS_LRO_POLL_SECONDS``: seconds between polls of an email send operation.

Exit codes: 0 done, 1 something failed (a channel refused, state problems), 2 bad input or settings.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shared.alerts.config_loader import (
    RECIPIENTS_SETTING,
    ConfigLoad,
    load_alert_config,
    parse_recipients,
    recipients_alert_config,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.alerts.config import AlertConfig
    from shared.alerts.outcome import AlertRunResult

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
MAX_FINDINGS_BYTES = 64 * 1024 * 1024
SAMPLE_RESOURCE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/zts-test/"
                   "providers/Microsoft.Compute/virtualMachines/vm-zts-sample")

__all__ = ["add_alert_commands", "cmd_alerts_check", "cmd_alerts_route", "cmd_alerts_test"]


def _credential() -> TokenCredential:
    from shared.adapters.azure_clients import default_credential

    return default_credential()


def _load_config(path: Path, err: TextIO) -> AlertConfig | None:
    """The configuration, or None after printing every problem and their count."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        print(f"zts: cannot read the alert configuration {path}: {error}", file=err)
        return None
    loaded: ConfigLoad = load_alert_config(
        text, str(path), parse_recipients(os.environ.get(RECIPIENTS_SETTING, "")))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=err)
    for issue in loaded.errors:
        print(f"error: {issue}", file=err)
    if loaded.config is None:
        print(f"zts: {len(loaded.errors)} error(s) in {path}; nothing was done", file=err)
    return loaded.config


def cmd_alerts_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load_config(args.config, err)
    if config is None:
        return EXIT_INVALID
    print(f"{args.config}: ok ({len(config.routes)} route(s); email "
          f"{'on' if config.email_enabled else 'off'}, teams "
          f"{'on' if config.teams_enabled else 'off'})", file=out)
    return EXIT_OK


def _sample_item() -> Any:
    from shared.alerts.message import AlertItem

    now = datetime.now(UTC).replace(microsecond=0)
    return AlertItem(
        kind="test", reason="sent by `zts alerts test` to check the channel",
        fingerprint="0" * 32, detection="test", severity="informational",
        title="zts test alert: this channel receives zts alerts", resource_id=SAMPLE_RESOURCE,
        observed_at=now.isoformat(),
        evidence={"note": "No action needed.", "reached": ["10.0.1.4", "10.0.2.5"]},
        first_seen=now)


def cmd_alerts_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Send one sample alert through the chosen channel; no state is read or written."""
    from shared.alerts.ports import DeliveryFailed

    config = _load_config(args.config, err) if args.config else None
    if args.config and config is None:
        return EXIT_INVALID
    try:
        if args.channel == "teams":
            return _test_teams(out, err)
        recipients: tuple[str, ...] | None = tuple(
            args.to or (config.default_recipients if config else ()))
        if not recipients and config is None:
            recipients = _setting_recipients(err)
        if recipients is None:
            return EXIT_INVALID
        return _test_email(recipients, out, err)
    except DeliveryFailed as error:
        print(f"zts: {error}", file=err)
        return EXIT_FAILED
    except ValueError as error:
        print(f"zts: {error}", file=err)
        return EXIT_INVALID


def _setting_recipients(err: TextIO) -> tuple[str, ...] | None:
    """The checked addresses of ``ZTS_EMAIL_RECIPIENTS`` (``()`` when unset), or None after
    printing what is wrong with them."""
    addresses = parse_recipients(os.environ.get(RECIPIENTS_SETTING, ""))
    if not addresses:
        return ()
    loaded = recipients_alert_config(addresses)
    for issue in loaded.errors:
        print(f"error: {issue}", file=err)
    return None if loaded.config is None else loaded.config.default_recipients


def _test_teams(out: TextIO, err: TextIO) -> int:
    from shared.adapters.teams_webhook import TeamsWebhookChannel
    from shared.alerts.message import DEFAULT_REMEDIATION
    from shared.alerts.render_card import alert_card

    teams = TeamsWebhookChannel.from_env(os.environ)
    if teams is None:
        print("zts: set ZTS_TEAMS_WEBHOOK_URL to the Workflows webhook URL", file=err)
        return EXIT_INVALID
    try:
        teams.post(alert_card(_sample_item(), DEFAULT_REMEDIATION))
    finally:
        teams.close()
    print("teams: test alert accepted by the webhook", file=out)
    return EXIT_OK


def _test_email(recipients: tuple[str, ...], out: TextIO, err: TextIO) -> int:
    from shared.adapters.acs_email import AcsEmailChannel
    from shared.alerts.message import DEFAULT_REMEDIATION
    from shared.alerts.render_email import alert_email

    if not recipients:
        print("zts: no recipient: give --to ADDRESS, --config with channels.email.to, or set "
              f"{RECIPIENTS_SETTING}", file=err)
        return EXIT_INVALID
    email = AcsEmailChannel.from_env(os.environ, _credential)
    if email is None:
        print("zts: set ZTS_ACS_ENDPOINT (managed identity) or ZTS_ACS_CONNECTION_STRING, "
              "and ZTS_EMAIL_SENDER", file=err)
        return EXIT_INVALID
    try:
        operation = email.send(recipients, alert_email(_sample_item(), DEFAULT_REMEDIATION),
                               operation_id=_uuid())
    finally:
        email.close()
    print(f"email: test alert accepted for {', '.join(recipients)} (operation {operation})",
          file=out)
    return EXIT_OK


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def cmd_alerts_route(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Route the findings of a JSON file through the configured channels, with dedup state."""
    from shared.alerts.findings_file import parse_findings

    config = _load_config(args.config, err)
    if config is None:
        return EXIT_INVALID
    try:
        with args.findings.open("rb") as handle:
            raw = handle.read(MAX_FINDINGS_BYTES + 1)
        if len(raw) > MAX_FINDINGS_BYTES:
            print(f"zts: {args.findings} is larger than {MAX_FINDINGS_BYTES} bytes", file=err)
            return EXIT_INVALID
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        print(f"zts: cannot read {args.findings}: {error}", file=err)
        return EXIT_INVALID
    loaded = parse_findings(text, str(args.findings))
    if not loaded.ok:
        for problem in loaded.errors[:50]:
            print(f"error: {problem}", file=err)
        if len(loaded.errors) > 50:
            print(f"error: ... and {len(loaded.errors) - 50} more", file=err)
        bad = len({p.split("]", 1)[0] for p in loaded.errors if "findings[" in p})
        print(f"zts: {len(loaded.errors)} problem(s) in {bad or 'the'} of {loaded.total} "
              f"finding(s) of {args.findings}; nothing was routed", file=err)
        return EXIT_INVALID
    return _route(args, config, loaded.observations, out, err, os.environ)


def route_findings(config_path: Path, findings: Sequence[Any], checked: Sequence[str],
                   out: TextIO, err: TextIO) -> int:
    """Route findings another command produced (``zts analyze --alert``); detections in
    ``checked`` ran to completion, so their unseen findings may resolve."""
    config = _load_config(config_path, err)
    if config is None:
        return EXIT_INVALID
    args = argparse.Namespace(resolve=bool(checked), checked=list(checked), json=False)
    return _route(args, config, list(findings), out, err, os.environ)


def _route(args: argparse.Namespace, config: AlertConfig, observations: Any, out: TextIO,
           err: TextIO, env: Mapping[str, str]) -> int:
    from shared.adapters.acs_email import AcsEmailChannel
    from shared.adapters.alert_state import TableAlertState
    from shared.adapters.teams_webhook import TeamsWebhookChannel
    from shared.services.alerting import AlertRouter

    try:
        state = TableAlertState.from_env(env, _credential)
        email = AcsEmailChannel.from_env(env, _credential) if config.email_enabled else None
        teams = TeamsWebhookChannel.from_env(env) if config.teams_enabled else None
    except ValueError as error:
        print(f"zts: {error}", file=err)
        return EXIT_INVALID
    if state is None:
        print("zts: routing needs the dedup state store: set ZTS_ALERT_STATE_CONNECTION_STRING "
              "or ZTS_STORAGE_TABLE_ENDPOINT", file=err)
        return EXIT_INVALID
    router = AlertRouter(config, state, email, teams)
    try:
        if args.resolve:
            checked = args.checked or sorted({o.finding.detection for o in observations})
            result = router.run(observations, checked)
        else:
            result = router.route(observations)
    finally:
        state.close()
        for channel in (email, teams):
            if channel is not None:
                channel.close()
    _print_result(result, args.json, out, err)
    return EXIT_OK if result.ok else EXIT_FAILED


def _print_result(result: AlertRunResult, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        json.dump(result.as_dict(), out, indent=2, sort_keys=True)
        out.write("\n")
        return
    for finding in (*result.findings, *result.resolutions):
        channels = "; ".join(f"{c.channel} {c.action}" + (f" ({c.kind})" if c.kind else "")
                             for c in finding.channels) or finding.note
        print(f"[{finding.severity}] {finding.detection} {finding.fingerprint[:12]}: {channels}",
              file=out)
    for batch in result.batches:
        print(f"{batch.kind} via {batch.channel}: {batch.action}, {len(batch.fingerprints)} "
              f"finding(s)" + (f" ({batch.reason})" if batch.reason else ""), file=out)
    for name, report in sorted(result.channels.items()):
        if report.down or report.failed:
            print(f"channel {name}: {report.failed} failed delivery(ies)"
                  + (", given up for this run" if report.down else "")
                  + f": {report.last_error}", file=err)
    for problem in result.problems:
        print(f"problem: {problem}", file=err)
    counts = ", ".join(f"{channel}: " + " ".join(f"{k}={v}" for k, v in c.items())
                       for channel, c in result.counts().items())
    print(f"alerts: {'ok' if result.ok else 'FAILED'}" + (f" ({counts})" if counts else ""),
          file=out)


def add_alert_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``zts alerts check|test|route`` on the ``zts`` sub-command parser."""
    alerts = commands.add_parser("alerts", help="alert routing: check, test a channel, route",
                                 description="Email and Teams alerts for findings, deduplicated "
                                             "in Table Storage (see docs/alerts.md).")
    sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate an alert configuration file")
    check.add_argument("--config", type=Path, required=True, help="alert configuration (YAML)")
    check.set_defaults(handler=cmd_alerts_check)

    test = sub.add_parser("test", help="send a sample alert through one channel",
                          description="Send a sample alert through the configured channel "
                                      "(settings from the environment). No state is touched.")
    test.add_argument("--channel", choices=("teams", "email"), required=True)
    test.add_argument("--config", type=Path, help="alert configuration (for the recipients)")
    test.add_argument("--to", action="append", metavar="ADDRESS",
                      help="email recipient (repeat for several); default: channels.email.to")
    test.set_defaults(handler=cmd_alerts_test)

    route = sub.add_parser("route", help="route findings from a JSON file",
                           description='Route {"findings": [...]} (as Finding.as_dict() and '
                                       "`zts apply --json` print them) through the channels, "
                                       "deduplicated against the state store.")
    route.add_argument("--findings", type=Path, required=True, help="findings file (JSON)")
    route.add_argument("--config", type=Path, required=True, help="alert configuration (YAML)")
    route.add_argument("--resolve", action="store_true",
                       help="also resolve open findings of the checked detections that the file "
                            "does not contain")
    route.add_argument("--checked", action="append", metavar="DETECTION",
                       help="with --resolve: a detection that ran (repeat); default: the "
                            "detections present in the file")
    route.add_argument("--json", action="store_true", help="machine-readable result")
    route.set_defaults(handler=cmd_alerts_route)
