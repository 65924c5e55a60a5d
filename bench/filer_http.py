"""Benchmark: 1 GiB over loopback HTTP into a task area with `tesk filer`, against curl in the same run.

    .venv/bin/python bench/filer_http.py [--size-mib 1024] [--rounds 3] [--area-dir /dev/shm]

A sparse file is served by a small sendfile() server on 127.0.0.1 (so the server is not the
bottleneck). Each round downloads it with `curl -o /dev/null`, with `curl -o <area>/file`, and with
`tesk filer` (a separate process, as in a filer Job) into a task area in --area-dir. The best time of
each is kept; the figures are the filer's throughput as a fraction of curl's (target >= 0.8x of
`curl -o /dev/null`) and the filer's peak RSS from wait4() (target <= 150 MB).

--area-dir defaults to /dev/shm (memory-backed) so that the network path is measured rather than
this machine's disk; the `curl -o file` column shows what writing to the same place costs curl.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def serve(path: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    size = path.stat().st_size

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as f:
                self.connection.sendfile(f)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/big.bin"


def timed(
    cmd: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS (bytes) and stdout of one child process; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    if stdin:
        proc.stdin.write(stdin)
    proc.stdin.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err.decode()[-2000:]} {out.decode()[-500:]}")
    return elapsed, usage.ru_maxrss * 1024, out


def transfer_seconds(result: bytes) -> float:
    """The filer's own time for the transfer (its log line), i.e. without interpreter start-up."""
    line = json.loads(result.decode().strip().splitlines()[-1])["system_logs"][-1]
    return float(line.rsplit(" in ", 1)[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--area-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    args = parser.parse_args()
    curl = shutil.which("curl")
    if not curl:
        raise SystemExit("curl is needed for the baseline (apt-get install curl)")
    size = args.size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="filer-bench-"))
    area = Path(tempfile.mkdtemp(prefix="filer-bench-area-", dir=args.area_dir))
    try:
        source = work / "big.bin"
        with open(source, "wb") as f:
            f.truncate(size)  # sparse: the server reads zero pages, not the disk
        server, url = serve(source)
        job = json.dumps(
            {"direction": "inputs", "base": str(area), "inputs": [{"path": "/data/big.bin", "url": url}]}
        )
        tesk = [sys.executable, "-c", "from tesk.cli import main; main()", "filer", "-"]
        best = {
            "curl /dev/null": float("inf"),
            "curl file": float("inf"),
            "tesk filer": float("inf"),
            "filer transfer": float("inf"),
        }
        peak_rss = 0

        def curl_null() -> None:
            best["curl /dev/null"] = min(
                best["curl /dev/null"], timed([curl, "-sS", "-o", "/dev/null", url])[0]
            )

        def curl_file() -> None:
            target = area / "curl.bin"
            best["curl file"] = min(best["curl file"], timed([curl, "-sS", "-o", str(target), url])[0])
            target.unlink()
            os.sync()  # no dirty pages of one run may slow down the next (ext4 writeback)

        def filer() -> None:
            nonlocal peak_rss
            seconds, rss, result = timed(tesk, stdin=job.encode())
            got = (area / "data" / "big.bin").stat().st_size
            assert got == size, f"the filer wrote {got} bytes, expected {size}"
            (area / "data" / "big.bin").unlink()
            os.sync()
            best["tesk filer"] = min(best["tesk filer"], seconds)
            best["filer transfer"] = min(best["filer transfer"], transfer_seconds(result))
            peak_rss = max(peak_rss, rss)

        runs = [curl_null, curl_file, filer]
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(runs)  # each one goes first in turn: no order bias
            for run in runs[shift:] + runs[:shift]:
                run()
            print(
                f"round {round_no}: " + ", ".join(f"{k} {size / v / 1e6:.0f} MB/s" for k, v in best.items()),
                flush=True,
            )
        server.shutdown()
        rates = {k: size / v / 1e6 for k, v in best.items()}
        print(
            f"\n{args.size_mib} MiB over loopback HTTP, best of {args.rounds}, task area in {args.area_dir}:"
        )
        for name, rate in rates.items():
            print(f"  {name:15s} {rate:8.0f} MB/s  ({best[name]:.2f} s)")
        ratio = rates["tesk filer"] / rates["curl /dev/null"]
        print(f"  filer / curl -o /dev/null: {ratio:.2f}x (target >= 0.8x)")
        print(f"  filer / curl -o file:      {rates['tesk filer'] / rates['curl file']:.2f}x")
        print(
            f"  without the filer's interpreter start-up: {rates['filer transfer'] / rates['curl /dev/null']:.2f}x "
            f"of curl -o /dev/null, {rates['filer transfer'] / rates['curl file']:.2f}x of curl -o file"
        )
        print(f"  filer peak RSS: {peak_rss / 1e6:.0f} MB (target <= 150 MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(area, ignore_errors=True)


if __name__ == "__main__":
    main()
