"""Benchmark: S3 upload of 1 GiB to moto_server with `tesk filer`, against boto3's own best upload_file.

    .venv/bin/python bench/filer_s3.py [--size-mib 1024] [--rounds 1] [--area-dir /dev/shm]

Every upload goes to a fresh moto_server on 127.0.0.1 (moto keeps objects in memory and slows down
as it fills). The baseline is boto3's `upload_file` with its default TransferConfig and two larger
part sizes, best of them; the filer uploads the same file as a task output through `tesk filer` in
a separate process, as a filer Job would. Printed: throughput of each, the ratio filer / best boto3
(wall time, and the filer's own transfer time without interpreter start-up) and the filer's peak
RSS (wait4). moto itself is the bottleneck here, so the ratio mostly shows that the filer adds
little on top of boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).parent))
from filer_http import timed, transfer_seconds

MiB = 1024 * 1024


def start_moto(logfile: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    with open(logfile, "wb") as log:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.1)


class Moto:
    """A fresh moto_server per upload: moto keeps every object in memory, which slows later runs."""

    def __init__(self, logfile: Path) -> None:
        self.logfile = logfile

    def __enter__(self) -> Any:
        self.proc, self.endpoint = start_moto(self.logfile)
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, config=Config(s3={"addressing_style": "path"}), **CREDS
        )
        client.create_bucket(Bucket="bench")
        return client

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            print(
                "moto_server log (last lines):\n" + self.logfile.read_text(errors="replace")[-3000:],
                file=sys.stderr,
            )
        self.proc.terminate()
        self.proc.wait(10)


CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
BASELINES = {
    "boto3 default (8 MiB x 10)": TransferConfig(),
    "boto3 16 MiB x 8": TransferConfig(
        multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=8
    ),
    "boto3 64 MiB x 10": TransferConfig(
        multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=10
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--area-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    args = parser.parse_args()
    size = args.size_mib * MiB
    area = Path(tempfile.mkdtemp(prefix="filer-bench-s3-", dir=args.area_dir))
    moto = Moto(area / "moto.log")
    try:
        source = area / "out" / "big.bin"
        source.parent.mkdir()
        with open(source, "wb") as f:
            f.writelines(os.urandom(MiB) for _ in range(args.size_mib))  # real bytes, not a sparse file
        job = {
            "direction": "outputs",
            "base": str(area),
            "outputs": [{"path": "/out/big.bin", "url": "s3://bench/f.bin"}],
        }
        tesk = [sys.executable, "-c", "from tesk.cli import main; main()", "filer", "-"]
        best: dict[str, float] = {}
        peak_rss = 0
        for round_no in range(1, args.rounds + 1):
            for name, config in BASELINES.items():
                with moto as client:
                    start = time.perf_counter()
                    client.upload_file(str(source), "bench", "b.bin", Config=config)
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
            with moto as client:
                endpoint = {
                    "bucket": "bench",
                    "endpoint_url": moto.endpoint,
                    "access_key_id": "bench",
                    "secret_access_key": "bench",
                    "region": "us-east-1",
                    "addressing_style": "path",
                }
                env = os.environ | {"TESK_FILER_S3_ENDPOINTS": json.dumps([endpoint])}
                wall, rss, result = timed(tesk, stdin=json.dumps(job).encode(), env=env)
                assert client.head_object(Bucket="bench", Key="f.bin")["ContentLength"] == size
            best["tesk filer (wall)"] = min(best.get("tesk filer (wall)", float("inf")), wall)
            best["tesk filer (transfer)"] = min(
                best.get("tesk filer (transfer)", float("inf")), transfer_seconds(result)
            )
            peak_rss = max(peak_rss, rss)
            print(
                f"round {round_no}: " + ", ".join(f"{k} {size / v / 1e6:.0f} MB/s" for k, v in best.items()),
                flush=True,
            )
        boto_best = min(BASELINES, key=best.__getitem__)
        rate = {k: size / v / 1e6 for k, v in best.items()}
        print(
            f"\n{args.size_mib} MiB upload to moto_server on loopback (a fresh server per upload), best of {args.rounds}:"
        )
        for name in best:
            print(f"  {name:28s} {rate[name]:6.0f} MB/s")
        print(
            f"  filer / boto3's best ({boto_best}): {rate['tesk filer (wall)'] / rate[boto_best]:.2f}x wall, "
            f"{rate['tesk filer (transfer)'] / rate[boto_best]:.2f}x without interpreter start-up"
        )
        print(f"  filer peak RSS: {peak_rss / 1e6:.0f} MB")
    finally:
        shutil.rmtree(area, ignore_errors=True)


if __name__ == "__main__":
    main()
