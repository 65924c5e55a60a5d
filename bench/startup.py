"""Server start-up time: from starting `tesk serve` (local backend, drain mode, a fresh data folder) to
the first 200 of `/healthz`, polled every 5 ms. The figure includes the interpreter's start and every
import, which is what an operator waits for after a restart. Also the CPU time (user + system, from
/proc) the server process had used by then, which other work on a busy machine does not inflate.

Usage: .venv/bin/python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/ (see bench/api.py)

from bench._common import TESK, free_port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(data_dir: Path) -> tuple[float, float]:
    """Seconds from spawning `tesk serve` to its first healthy answer, and the CPU seconds it used."""
    port = free_port()
    env = {**os.environ, "TESK_DATA_DIR": str(data_dir), "TESK_LOCAL_MAX_TASKS": "0", "TESK_LOG_LEVEL": "warning"}
    url = f"http://127.0.0.1:{port}/healthz"
    started = time.perf_counter()
    proc = subprocess.Popen([TESK, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=1) as client:
            while time.perf_counter() - started < 60:
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - started, cpu_seconds(proc.pid)
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"tesk serve exited with {proc.returncode} before answering")
                time.sleep(0.005)
        raise SystemExit("tesk serve did not answer /healthz within 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    walls, cpus = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = start_once(Path(tmp))
        walls.append(wall)
        cpus.append(cpu)
    walls.sort()
    cpus.sort()
    print(f"tesk serve start-up to /healthz 200: median {statistics.median(walls) * 1000:.0f} ms wall "
          f"(range {walls[0] * 1000:.0f}-{walls[-1] * 1000:.0f}), median {statistics.median(cpus) * 1000:.0f} ms CPU "
          f"(range {cpus[0] * 1000:.0f}-{cpus[-1] * 1000:.0f}) over {args.runs} runs")


if __name__ == "__main__":
    main()
