"""The Azurite process helper: starts on free ports, answers, stops by PID, explains failures."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from shared.local.azurite import ACCOUNT_NAME, Azurite, AzuriteError, AzuriteNotInstalled

REPO = Path(__file__).resolve().parents[2]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _azurite_files() -> set[Path]:
    """Files Azurite writes into its workspace when it is not kept in memory and elsewhere."""
    patterns = ("__azurite*", "__blobstorage__", "__queuestorage__", "AzuriteConfig")
    return {path for root in {REPO, Path.cwd()} for p in patterns for path in root.glob(p)}


def _script(tmp_path: Path, body: str) -> Path:
    """A stand-in executable, to exercise startup failures without Node."""
    path = tmp_path / "fake-azurite"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.azurite
def test_starts_answers_and_stops() -> None:
    before = _azurite_files()
    with Azurite() as azurite:
        ports, pid, workdir = azurite.ports, azurite.pid, azurite.workdir
        assert sorted(ports) == ["blob", "queue", "table"]
        assert len(set(ports.values())) == 3
        assert azurite.table_endpoint == f"http://127.0.0.1:{ports['table']}/{ACCOUNT_NAME}"
        assert f"BlobEndpoint={azurite.blob_endpoint};" in azurite.connection_string
        assert f"QueueEndpoint={azurite.queue_endpoint};" in azurite.connection_string
        with TableServiceClient.from_connection_string(azurite.connection_string) as service:
            service.create_table("answers")
            assert [t.name for t in service.list_tables()] == ["answers"]
        assert all(_accepts(port) for port in ports.values())

    assert not _process_exists(pid)
    assert not any(_accepts(port) for port in ports.values())
    assert workdir is not None
    assert not workdir.exists()
    assert _azurite_files() == before  # nothing written to the working tree
    with pytest.raises(AzuriteError, match="not running"):
        _ = azurite.connection_string


@pytest.mark.azurite
def test_busy_explicit_port_fails_with_azurites_reason() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AzuriteError, match="EADDRINUSE") as failure:
            Azurite(table_port=port).start()
    assert "exited with code" in str(failure.value)


def test_missing_install_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(AzuriteNotInstalled, match="npm ci"):
        Azurite(repo_root=tmp_path).start()


def test_early_exit_reports_the_output(tmp_path: Path) -> None:
    fake = _script(tmp_path, 'echo "boom: bad flag" >&2; exit 3')
    with pytest.raises(AzuriteError, match=r"code 3(.|\n)*boom: bad flag"):
        Azurite(executable=fake).start()


def test_startup_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    fake = _script(tmp_path, f'echo $$ > "{pid_file}"; echo "starting..."; exec sleep 30')
    azurite = Azurite(executable=fake, startup_timeout=0.5, stop_timeout=2)
    with pytest.raises(AzuriteError, match=r"within 0.5 s(.|\n)*starting\.\.\."):
        azurite.start()
    assert not _process_exists(int(pid_file.read_text(encoding="utf-8")))
    assert azurite.workdir is None


def test_nothing_is_available_before_start() -> None:
    azurite = Azurite()
    with pytest.raises(AzuriteError, match="not running"):
        _ = azurite.table_endpoint
    azurite.stop()  # harmless when never started
