"""Run Azurite, the Azure Storage emulator, as a child process on free loopback ports.

Used by the pytest session fixture and by ``zts demo``, so both get the same in-memory Blob,
Queue and Table services and the same connection string.

Why it works the way it does:

* **Ports come from Azurite itself.** Azurite is started with port 0 for every service; the OS
  picks a free port at bind time and Azurite prints ``... service is successfully listening at
  http://127.0.0.1:PORT`` (also with ``--silent``). Reading that line has no race, unlike picking
  a port in Python, closing it and hoping nobody takes it before Azurite binds. Explicit ports can
  still be passed (for a demo that wants stable ports). A TCP connect confirms each port.
* **Nothing is written to the working tree.** ``--inMemoryPersistence`` keeps data in memory, and
  Azurite refuses ``--location`` together with it, so the child runs in a temporary directory
  (its default workspace is the current directory), removed on exit.
* **Stopped by PID.** ``node_modules/.bin/azurite`` is a symlink to a ``#!/usr/bin/env node``
  script, so the child PID is the node process; ``terminate`` stops it in milliseconds, ``kill``
  follows if it does not exit in time. Nothing is ever stopped by name.
* **Deterministic account.** ``AZURITE_ACCOUNTS`` is removed from the child's environment, so the
  well-known public development account below always works.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from shared.errors import ZtsError

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "SERVICES",
    "Azurite",
    "AzuriteError",
    "AzuriteNotInstalled",
    "default_executable",
]

ACCOUNT_NAME: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (  # the documented, public Azurite/Storage Emulator key: not a secret
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES: Final = ("blob", "queue", "table")

_FLAGS: Final = (
    "--inMemoryPersistence",  # no files, nothing left behind
    "--silent",  # no access log (the readiness lines are still printed)
    "--disableTelemetry",
    "--skipApiVersionCheck",  # newer SDKs send x-ms-version values Azurite 3.35 does not know yet
    "--loose",  # ignore unsupported headers instead of failing the request
)
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^\s:]+:(\d+)"
)
_TAIL_LINES: Final = 40


class AzuriteError(ZtsError):
    """Azurite could not be started or is not running."""


class AzuriteNotInstalled(AzuriteError):
    """The Azurite package (or Node.js) is missing; the message says how to install it."""


def default_executable(repo_root: Path | None = None) -> Path:
    """``<repo>/node_modules/.bin/azurite``; the repo root is the parent of ``shared/``."""
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[2]
    return root / "node_modules" / ".bin" / "azurite"


class Azurite:
    """An Azurite child process; use as a context manager (``with Azurite() as azurite: ...``)."""

    def __init__(
        self,
        *,
        repo_root: Path | None = None,
        executable: Path | None = None,
        host: str = "127.0.0.1",
        blob_port: int = 0,
        queue_port: int = 0,
        table_port: int = 0,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.executable = executable if executable is not None else default_executable(repo_root)
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._requested = {"blob": blob_port, "queue": queue_port, "table": table_port}
        self._ports: dict[str, int] = {}
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._lock = threading.Lock()
        self._all_listening = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._workdir: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start Azurite and return once every service accepts connections."""
        if self._process is not None:
            raise AzuriteError("Azurite is already started")
        self._check_installed()
        self._workdir = Path(tempfile.mkdtemp(prefix="zts-azurite-"))
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self._command(),
            cwd=self._workdir,
            env=_child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read_output,
            args=(self._process.stdout,),
            name="azurite-output",
            daemon=True,
        )
        self._reader.start()
        try:
            self._wait_until_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process by PID (terminate, then kill) and remove its temporary directory.

        Safe to call more than once and after a failed start.
        """
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, self.stop_timeout)
            if self._reader is not None:
                self._reader.join(timeout=self.stop_timeout)
            if process.stdout is not None:
                process.stdout.close()
        self._reader = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """PID of the running Azurite (node) process."""
        return self._running().pid

    @property
    def workdir(self) -> Path | None:
        """The temporary directory Azurite runs in (None when stopped; removed on stop)."""
        return self._workdir

    @property
    def ports(self) -> dict[str, int]:
        """The listening port of each service: ``{"blob": ..., "queue": ..., "table": ...}``."""
        self._running()
        return dict(self._ports)

    def endpoint(self, service: str) -> str:
        """``http://HOST:PORT/devstoreaccount1`` for ``blob``, ``queue`` or ``table``."""
        return f"http://{self.host}:{self.ports[service]}/{ACCOUNT_NAME}"

    @property
    def blob_endpoint(self) -> str:
        return self.endpoint("blob")

    @property
    def queue_endpoint(self) -> str:
        return self.endpoint("queue")

    @property
    def table_endpoint(self) -> str:
        return self.endpoint("table")

    @property
    def connection_string(self) -> str:
        """A connection string for the public development account with all three endpoints."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def output_tail(self) -> str:
        """The last lines Azurite printed (stdout and stderr), for error messages."""
        with self._lock:
            return "".join(self._tail)

    # -- internals ---------------------------------------------------------------------------

    def _command(self) -> list[str]:
        command = [str(self.executable), *_FLAGS]
        for service in SERVICES:
            port = str(self._requested[service])
            command += [f"--{service}Host", self.host, f"--{service}Port", port]
        return command

    def _check_installed(self) -> None:
        if not self.executable.exists():
            raise AzuriteNotInstalled(
                f"Azurite is not installed ({self.executable} is missing). Run `npm ci` "
                "(or `make setup`) in the repository root to install the pinned version."
            )
        if shutil.which("node") is None:
            raise AzuriteNotInstalled("Azurite needs Node.js: install Node 20+ and put it on PATH.")

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None or not self._all_listening.is_set():
            raise AzuriteError("Azurite is not running: call start() or use it in a with-block")
        return self._process

    def _read_output(self, stream: IO[str]) -> None:
        """Drain the child's output (so its pipe never fills), keep a tail, note listening ports."""
        for line in stream:
            with self._lock:
                self._tail.append(line)
                match = _LISTENING.search(line)
                if match is not None:
                    self._ports[match.group(1).lower()] = int(match.group(2))
                    if len(self._ports) == len(SERVICES):
                        self._all_listening.set()

    def _wait_until_ready(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        while not self._all_listening.wait(timeout=0.05):
            if process.poll() is not None:
                self._fail(f"Azurite exited with code {process.returncode} during startup")
            if time.monotonic() > deadline:
                self._fail(f"Azurite did not report listening within {self.startup_timeout:g} s")
        for service, port in self.ports.items():
            if not _accepts_connections(self.host, port, deadline):
                self._fail(f"Azurite {service} port {port} does not accept connections")

    def _fail(self, reason: str) -> None:
        # let the reader catch up with the last output of a process that has exited
        process, reader = self._process, self._reader
        if reader is not None and process is not None and process.poll() is not None:
            reader.join(timeout=0.5)
        tail = self.output_tail().strip() or "(no output)"
        raise AzuriteError(f"{reason} ({self.executable}). Last output:\n{tail}")


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AZURITE_ACCOUNTS", None)  # custom accounts would disable devstoreaccount1's key
    return env


def _terminate(process: subprocess.Popen[str], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _accepts_connections(host: str, port: int, deadline: float) -> bool:
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
