"""Helpers shared by the benchmarks: start servers as subprocesses, wait for them, run wrk."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TESK = str(Path(sys.executable).with_name("tesk"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


@contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None, ready_url: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if ready_url:
            wait_until_up(ready_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def tesk_server(data_dir: Path, **env: str) -> Iterator[str]:
    """`tesk serve` on a random port, local backend in drain mode unless told otherwise."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"TESK_DATA_DIR": str(data_dir), "TESK_LOCAL_MAX_TASKS": "0", "TESK_LOG_LEVEL": "warning"} | env
    with process([TESK, "serve", "--host", "127.0.0.1", "--port", str(port)], settings, f"{url}/healthz"):
        yield url


def wrk(url: str, seconds: int = 5, connections: int = 32, threads: int = 1, script: Path | None = None) -> dict[str, float]:
    """Run wrk against one URL; returns requests/s and the count of non-2xx answers."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install -y wrk")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    return {"rps": rate, "non2xx": float(errors.group(1)) if errors else 0.0, "requests": float(total),
            "p50": p50.group(0) if p50 else "?"}  # type: ignore[dict-item]
