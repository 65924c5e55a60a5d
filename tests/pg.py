"""A throwaway PostgreSQL server for the tests (marker `postgres`), loaded as a pytest plugin.

One cluster per test session: `initdb` into a temp dir, listening on 127.0.0.1 on a random port
only (no Unix socket), password auth, stopped and deleted at the end. PostgreSQL refuses to run as
root, so under root (CI) the server runs as the `postgres` user Debian's package creates.

The database is created with the ICU `en-US` collation, as most real servers are set up (a
linguistic, not byte-order, collation), so store queries that rely on byte order would show here.

Without PostgreSQL binaries the tests skip locally but FAIL in CI (`CI` set), because a silent skip
there would hide that the PostgreSQL store was never tested. `.ci/setup.d/30-postgresql.sh` installs
them.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

USER = "tesk"


def _bin_dir() -> Path | None:
    """The newest Debian PostgreSQL bin dir (not /usr/local/bin, which may hold a wrapper)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"PostgreSQL test server: {what} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


@dataclass
class PostgresServer:
    """A running test cluster; `url(db)` is the SQLAlchemy URL tesk takes as TESK_DATABASE_URL."""

    port: int
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str = "template0") -> str:
        """A new empty database (or a copy of `template`); returns its URL."""
        name = "t_" + secrets.token_hex(6)
        self.admin(f'CREATE DATABASE {name} TEMPLATE "{template}"')
        return self.url(name)

    def admin(self, sql: str, database: str = "postgres") -> None:
        """Run SQL as the superuser; works from sync code and from inside a running loop."""

        async def run() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user=USER, password=self.password, database=database
            )
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}; CI must test the PostgreSQL store: run .ci/setup.d/30-postgresql.sh", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start the session's PostgreSQL cluster (see the module docstring)."""
    bindir = _bin_dir()
    if bindir is None:
        _missing("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
    assert bindir is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _missing("running as root without runuser, so PostgreSQL cannot be started as a non-root user")
    root = Path(tempfile.mkdtemp(prefix="tesk-pg-"))
    data = root / "data"
    password = secrets.token_hex(16)
    (root / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    from tests.conftest import free_port  # here, not at the top: tests/conftest.py imports this module

    port = free_port()
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--pwfile",
            str(root / "pw"),
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale-provider=icu",
            "--icu-locale=en-US",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        "initdb",
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off"
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],
        "pg_ctl start",
    )
    try:
        yield PostgresServer(port, password)
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A `postgresql+asyncpg://` URL of one database shared by the session."""
    return postgres_server.create_database()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A `postgresql+asyncpg://` URL of a new empty database, for tests that must start clean."""
    return postgres_server.create_database()
