"""The HTTPS scaffolding the fakes share: a threading server on ``https://127.0.0.1:<free port>``
with a throw-away ``trustme`` CA (the SDKs refuse bearer tokens over plain http).

A fake hands :class:`LoopbackTlsServer` one dispatch callable
``(method, target, headers, body) -> (status, headers, body) | None``: ``target`` is the raw
request target (path and query), ``headers`` has lower-case names, and ``None`` drops the
connection without answering. Responses are HTTP/1.1 with ``Content-Length``, so clients keep
their connections alive; the TLS handshake runs in the connection's thread, not in the accept
loop. :meth:`LoopbackTlsServer.stop` shuts the open connections, joins the serving thread and
deletes the CA file.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme

#: status, headers (in order, repeats allowed) and the body bytes of one answer.
Reply = tuple[int, list[tuple[str, str]], bytes]
#: ``(method, target, lower-case headers, body) -> Reply``, or ``None`` to drop the connection.
Dispatch = Callable[[str, str, dict[str, str], bytes], Reply | None]

_METHODS = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE"})


def json_reply(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Reply:
    """``body`` as JSON (no body when ``None``), with ``Content-Type`` after ``headers``."""
    payload = b"" if body is None else json.dumps(body).encode()
    pairs = list((headers or {}).items())
    if payload:
        pairs.append(("Content-Type", "application/json; charset=utf-8"))
    return status, pairs, payload


class LoopbackTlsServer:
    """Serve ``dispatch`` over HTTPS on a free loopback port, in a daemon thread.

    Parameters:
        dispatch: answers each request (see the module docstring).
        name: the serving thread's name and the CA directory's prefix.
        methods: the methods passed to ``dispatch`` (of GET, PUT, POST, PATCH, DELETE); others
            are answered 501 like ``http.server`` does.
        timeout: seconds an idle keep-alive connection is kept (``None``: no limit).

    :attr:`url` and :attr:`ca_path` are empty before the first :meth:`start` and keep their
    values after :meth:`stop`. The server can be started again after it is stopped.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        name: str,
        methods: Iterable[str] = _METHODS,
        timeout: float | None = 60,
    ) -> None:
        self._dispatch = dispatch
        self._name = name
        self._methods = frozenset(m.upper() for m in methods)
        if not self._methods <= _METHODS:
            raise ValueError(f"unsupported methods: {sorted(self._methods - _METHODS)}")
        self._timeout = timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""
        self.ca_path = ""

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Create the CA, bind a free loopback port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{self._name} is already running")
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self._tempdir = tempfile.TemporaryDirectory(prefix=f"{self._name}-")
        ca_path = Path(self._tempdir.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_path = str(ca_path)
        self._server = _Server(context, self._dispatch, self._methods, self._timeout)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self._name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections, join the thread and delete the CA file."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


class TlsFake:
    """Base of the fakes: the lifecycle and addresses of the :class:`LoopbackTlsServer` that the
    subclass puts in ``self._tls``; use a fake as a context manager."""

    _tls: LoopbackTlsServer

    def start(self) -> None:
        """Create the CA, bind a free loopback port and serve in a daemon thread."""
        if self._tls.running:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._tls.start()

    def stop(self) -> None:
        """Stop serving, close open connections, join the thread and delete the CA file."""
        self._tls.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` (empty before the first start)."""
        return self._tls.url

    @property
    def ca_path(self) -> str:
        """PEM file of the CA to trust (empty before the first start)."""
        return self._tls.ca_path


class _Server(ThreadingHTTPServer):
    """A threading HTTPS server that can close its keep-alive connections when stopped."""

    daemon_threads = True

    def __init__(
        self,
        context: ssl.SSLContext,
        dispatch: Dispatch,
        methods: frozenset[str],
        timeout: float | None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.dispatch = dispatch
        self.methods = methods
        self.idle_timeout = timeout
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up or refuse the certificate."""
        # Only called from inside an except block, so the exception is current.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait
    server: _Server

    def setup(self) -> None:
        super().setup()
        if self.server.idle_timeout is not None:
            self.connection.settimeout(self.server.idle_timeout)
        self.server.track(self.connection, open_=True)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()  # in this thread, not in the accept loop
            except OSError:
                self.server.track(self.connection, open_=False)
                raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def _serve(self) -> None:
        if self.command not in self.server.methods:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.dispatch(self.command, self.path, headers, raw)
        if reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, reply_headers, payload = reply
        self.send_response(status)
        for name, value in reply_headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log (it would print the webhook signature)."""
