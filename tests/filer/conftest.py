"""Real storage peers on 127.0.0.1 for the filer tests: HTTP, FTP (pyftpdlib) and S3 (moto_server).

Each peer is started by the fixture on a free port and stopped after the tests that use it; no
test talks to anything outside this machine.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tesk.filer import FilerSettings, S3Endpoint, TaskArea


class Log(list[str]):
    """Collects the filer's system_logs lines; callable like the runner's note function."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def area(tmp_path: Path) -> TaskArea:
    base = tmp_path / "area"
    base.mkdir()
    return TaskArea(base)


def files_below(folder: Path) -> dict[str, bytes]:
    """Every file under a folder, by its path relative to it, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def make_settings(**overrides: Any) -> FilerSettings:
    """Quick timeouts and retries so failure tests take a fraction of a second."""
    values: dict[str, Any] = {"timeout": 2.0, "retries": 2, "retry_backoff": 0.01}
    values.update(overrides)
    return FilerSettings(**values)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpPeer:
    """What the HTTP peer serves and what it received."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    puts: dict[str, bytes] = field(default_factory=dict)
    put_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    auth: dict[str, str | None] = field(default_factory=dict)
    failures_before_success: int = 2
    slow_seconds: float = 5.0


def _handler(peer: HttpPeer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            peer.hits[path] = peer.hits.get(path, 0) + 1
            peer.auth[path] = self.headers.get("Authorization")
            if path.startswith("/files/") and path[7:] in peer.files:
                self._send(200, peer.files[path[7:]], {"Content-Type": "application/octet-stream"})
            elif path == "/flaky":
                if peer.hits[path] <= peer.failures_before_success:
                    self._send(500, b"database is warming up", {"Content-Type": "text/plain"})
                else:
                    self._send(200, b"finally")
            elif path == "/down":
                self._send(503, b"maintenance until tomorrow", {"Content-Type": "text/plain"})
            elif path == "/forbidden":
                self._send(403, b"<Error>no access</Error>", {"Content-Type": "application/xml"})
            elif path == "/slow":
                time.sleep(peer.slow_seconds)
                self._send(200, b"late")
            elif path == "/redirect":
                self._send(302, b"", {"Location": "/files/a.bin"})
            elif path == "/redirect-to":
                self._send(302, b"", {"Location": urllib.parse.unquote(query)})
            elif path == "/redirect-loop":
                self._send(302, b"", {"Location": "/redirect-loop"})
            elif path == "/stall-body":  # half the body, a pause, then the rest
                self.send_response(200)
                self.send_header("Content-Length", str(2 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"a" * 1024 * 1024)
                self.wfile.flush()
                time.sleep(peer.slow_seconds)
                self.wfile.write(b"b" * 1024 * 1024)
            elif path == "/short":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 10)
                self.close_connection = True
            else:
                self._send(404, b"no such file here", {"Content-Type": "text/plain"})

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path.startswith("/readonly/"):
                self._send(405, b"read-only area", {"Content-Type": "text/plain"})
                return
            peer.puts[self.path] = body
            peer.put_headers[self.path] = dict(self.headers)
            self._send(201, b"")

    return Handler


@pytest.fixture
def http_peer() -> Iterator[HttpPeer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    peer = HttpPeer(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(peer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield peer
    server.shutdown()
    server.server_close()


# --- FTP --------------------------------------------------------------------------------------


@dataclass
class FtpPeer:
    host: str
    port: int
    root: Path
    user: str = "alice"
    password: str = "s3cret-pw"
    handler: type | None = None

    def url(self, path: str, *, creds: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if creds else ""
        return f"ftp://{auth}{self.host}:{self.port}/{path.lstrip('/')}"


@pytest.fixture
def ftp_peer(tmp_path: Path) -> Iterator[FtpPeer]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

    root = tmp_path / "ftp-root"
    root.mkdir()
    peer = FtpPeer("127.0.0.1", 0, root)
    authorizer = DummyAuthorizer()
    authorizer.add_user(peer.user, peer.password, str(root), perm="elradfmwMT")
    handler = type(
        "Handler",
        (FTPHandler,),
        {"authorizer": authorizer, "banner": "test peer", "auth_failed_timeout": 0.05},
    )
    # Its own IOLoop: pyftpdlib's default one is process-wide, and a stopping server of a previous
    # test would otherwise still answer (and reset) connections meant for this one.
    server = ThreadedFTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    peer.port = server.socket.getsockname()[1]
    peer.handler = handler
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"timeout": 0.2, "blocking": True}, daemon=True
    )
    thread.start()
    yield peer
    server.close_all()
    thread.join(5)


# --- S3 ---------------------------------------------------------------------------------------


@dataclass
class S3Peer:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def endpoint_entry(self, bucket: str | None, **changes: Any) -> S3Endpoint:
        values: dict[str, Any] = {
            "bucket": bucket,
            "endpoint_url": self.endpoint,
            "region": self.region,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "addressing_style": "path",
        }
        values.update(changes)
        return S3Endpoint(**values)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """moto_server in its own process on a free port of 127.0.0.1; yields its endpoint URL."""
    port = _free_port()
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    logfile = log_dir / "moto.log"
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, env=os.environ | (env or {})
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {logfile.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def s3_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Peer]:
    """moto_server in its own process, enforcing credentials (an IAM user made for the tests).

    The first three requests are let through unauthenticated to create that user; every later
    request must be signed with its key, so a wrong key really fails.
    """
    import boto3

    with moto_server(tmp_path_factory.mktemp("moto"), {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
        )
        iam.create_user(UserName="filer")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="filer", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="filer")["AccessKey"]
        yield S3Peer(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture
def bucket(s3_peer: S3Peer, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test (moto keeps state for the whole session)."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid() % 1000}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    client = s3_peer.client()
    client.create_bucket(Bucket=name)
    return name
