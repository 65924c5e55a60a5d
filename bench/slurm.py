"""Benchmarks of the Slurm backend against the same work submitted to Slurm directly, in one run.

(a) latency: a trivial task's submit -> COMPLETE through `tesk serve --backend slurm`, next to
    `sbatch --wait` of a batch script that runs the same container (`podman run --rm ... true`);
    alternating one by one (target: overhead <= +1 s median). `sbatch --wait` looks at its job 2 s
    after the submit, then 8 s later (Slurm 22.05; `true` alone gives 2.05 s or 10.05 s), so the same
    job is also timed by `sbatch` plus squeue every 0.05 s: its true end as a client sees it.
(b) throughput: TASKS trivial tasks at once through tesk, next to TASKS direct `sbatch` jobs of the
    same container, each side until the last one has ended (target: tesk >= 0.8x the direct rate).

Needs the Slurm that `.ci/setup.d/60-slurm.sh` starts (the node declares 4 CPUs, so 4 jobs run at once).
Usage: .venv/bin/python bench/slurm.py [ROUNDS] [TASKS]
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package
from bench.local_throughput import through_server
from tests.local.server import Server

IMAGE = "localhost/busybox:latest"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
CONTAINER = f"podman run --rm --network none --pull=never {IMAGE} true"


def direct_script(folder: Path) -> Path:
    script = folder / "direct.sh"
    script.write_text(f"#!/bin/sh\nexec {CONTAINER}\n")
    return script


def sbatch_wait(script: Path, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["sbatch", "--wait", "--quiet", f"--output={output}", str(script)], check=True)
    return time.perf_counter() - started


def sbatch_polled(script: Path, output: Path) -> float:
    """Submit -> the job no longer active, told by squeue every 0.05 s."""
    started = time.perf_counter()
    job_id = subprocess.run(["sbatch", "--parsable", f"--output={output}", str(script)],
                            check=True, capture_output=True, text=True).stdout.strip().split(";")[0]
    while True:
        state = subprocess.run(["squeue", "--noheader", "--jobs", job_id, "--states=all", "--format=%T"],
                               capture_output=True, text=True, check=True).stdout.strip()
        if state in ("COMPLETED", "FAILED"):
            if state == "FAILED":
                raise RuntimeError(f"direct job {job_id} failed")
            return time.perf_counter() - started
        time.sleep(0.05)


def task_run(client: httpx.Client, url: str) -> float:
    """Submit -> COMPLETE as a client sees it, told by the server's event stream (no polling load)."""
    started = time.perf_counter()
    task_id = client.post(f"{url}/tasks", json={"executors": [{"image": IMAGE, "command": ["true"]}]}).json()["id"]
    with client.stream("GET", f"{url}/tasks/{task_id}/events") as events:
        for line in events.iter_lines():
            if line.startswith("data:") and (state := json.loads(line[5:])["state"]) in TERMINAL:
                if state != "COMPLETE":
                    raise RuntimeError(f"task {task_id} ended {state}")
                break
    return time.perf_counter() - started


def direct_burst(script: Path, output: Path, count: int) -> float:
    """`count` sbatch jobs at once; seconds until squeue lists none of them as active."""
    started = time.perf_counter()
    ids = [subprocess.run(["sbatch", "--parsable", f"--output={output}", "--job-name=bench-direct", str(script)],
                          check=True, capture_output=True, text=True).stdout.strip().split(";")[0]
           for _ in range(count)]
    while True:
        listed = subprocess.run(["squeue", "--noheader", "--jobs", ",".join(ids), "--states=all", "--format=%T"],
                                capture_output=True, text=True, check=True).stdout.split()
        if len(listed) == count and all(state in ("COMPLETED", "FAILED") for state in listed):
            if "FAILED" in listed:
                raise RuntimeError("a direct sbatch job failed")
            return time.perf_counter() - started
        time.sleep(0.1)


def spread(seconds: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in sorted(seconds))


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script, output = direct_script(folder), folder / "direct.out"
        server = Server(folder, {"TESK_BACKEND": "slurm", "TESK_LOCAL_NETWORK": "none", "TESK_LOCAL_PULL": "never",
                                 "TESK_LOG_LEVEL": "warning"})
        server.start()
        try:
            with httpx.Client(timeout=60) as client:
                task_run(client, server.url)  # warm-up: first job, first container start
                sbatch_wait(script, output)
                tasks, bare, polled = [], [], []
                phase = random.Random(16)
                for _ in range(rounds):
                    # slurmctld starts these jobs on a beat (its log here: allocations 3.0 s apart), and
                    # back-to-back rounds lock each side to its own phase of that beat; a random pause
                    # before each submit gives both sides the same spread of waits.
                    time.sleep(phase.uniform(0, 3))
                    tasks.append(task_run(client, server.url))
                    time.sleep(phase.uniform(0, 3))
                    bare.append(sbatch_wait(script, output))
                    time.sleep(phase.uniform(0, 3))
                    polled.append(sbatch_polled(script, output))
            direct_seconds = direct_burst(script, output, count)
            served_seconds = asyncio.run(through_server(server.url, count))
        finally:
            server.stop()
    t, b, p = statistics.median(tasks), statistics.median(bare), statistics.median(polled)
    print(f"(a) {rounds} alternating rounds")
    print(f"    sbatch --wait of `{CONTAINER}`: median {b:.2f} s (all: {spread(bare)})")
    print(f"    sbatch + squeue every 0.05 s, same script: median {p:.2f} s (all: {spread(polled)})")
    print(f"    tesk submit -> COMPLETE (same container): median {t:.2f} s (all: {spread(tasks)})")
    for name, base in (("sbatch --wait", bare), ("sbatch + squeue", polled)):
        paired = statistics.median(task - one for task, one in zip(tasks, base, strict=True))
        print(f"    overhead over {name}: difference of medians {t - statistics.median(base):+.2f} s, "
              f"median of paired differences {paired:+.2f} s (target <= +1 s)")
    print(f"(b) {count} trivial jobs at once")
    print(f"    direct sbatch: {direct_seconds:.1f} s ({count / direct_seconds:.2f} jobs/s)")
    print(f"    through tesk:  {served_seconds:.1f} s ({count / served_seconds:.2f} tasks/s)")
    print(f"    ratio: {direct_seconds / served_seconds:.2f}x the direct throughput (target >= 0.8x)")


if __name__ == "__main__":
    main()
