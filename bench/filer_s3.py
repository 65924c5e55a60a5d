"""Benchmark: S3 upload of 1 GiB to moto_server with `tesk filer`, against boto3's own best upload_file.

    .venv/bin/python bench/filer_s3.py [--size-mib 1024] [--area-dir /dev/shm]

moto_server runs on 127.0.0.1 (in its own process). The baseline is boto3's `upload_file` with its
default TransferConfig and two larger part sizes, best of them; the filer uploads the same file as
a task output through `tesk filer` in a separate process, as a filer Job would. Printed: throughput
of each, the ratio filer / best boto3, and the filer's peak RSS (wait4). moto keeps objects in
memory, so each object is deleted after its run.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--area-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    args = parser.parse_args()
    size = args.size_mib * MiB
    area = Path(tempfile.mkdtemp(prefix="filer-bench-s3-", dir=args.area_dir))
    moto_log = area / "moto.log"
    proc, endpoint = start_moto(moto_log)
    try:
        source = area / "out" / "big.bin"
        source.parent.mkdir()
        with open(source, "wb") as f:
            f.writelines(os.urandom(MiB) for _ in range(args.size_mib))  # real bytes, not a sparse file
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
        client = boto3.client(
            "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}), **creds
        )
        client.create_bucket(Bucket="bench")
        baselines = {
            "boto3 default (8 MiB x 10)": TransferConfig(),
            "boto3 16 MiB x 8": TransferConfig(
                multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=8
            ),
            "boto3 64 MiB x 10": TransferConfig(
                multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=10
            ),
        }
        seconds: dict[str, float] = {}
        for name, config in baselines.items():
            start = time.perf_counter()
            client.upload_file(str(source), "bench", "baseline.bin", Config=config)
            seconds[name] = time.perf_counter() - start
            client.delete_object(Bucket="bench", Key="baseline.bin")
            print(f"{name}: {size / seconds[name] / 1e6:.0f} MB/s", flush=True)
        endpoints = [
            {
                "bucket": "bench",
                "endpoint_url": endpoint,
                "access_key_id": "bench",
                "secret_access_key": "bench",
                "region": "us-east-1",
                "addressing_style": "path",
            }
        ]
        env = os.environ | {"TESK_FILER_S3_ENDPOINTS": json.dumps(endpoints)}
        job = {
            "direction": "outputs",
            "base": str(area),
            "outputs": [{"path": "/out/big.bin", "url": "s3://bench/filer.bin"}],
        }
        tesk = [sys.executable, "-c", "from tesk.cli import main; main()", "filer", "-"]
        wall, rss, result = timed(tesk, stdin=json.dumps(job).encode(), env=env)
        assert client.head_object(Bucket="bench", Key="filer.bin")["ContentLength"] == size
        client.delete_object(Bucket="bench", Key="filer.bin")
        transfer = transfer_seconds(result)
        best_name = min(seconds, key=seconds.__getitem__)
        best = size / seconds[best_name] / 1e6
        print(f"\n{args.size_mib} MiB upload to moto_server on loopback:")
        print(f"  best boto3 upload_file ({best_name}): {best:.0f} MB/s")
        print(
            f"  tesk filer (process, wall):      {size / wall / 1e6:.0f} MB/s -> {size / wall / 1e6 / best:.2f}x"
        )
        print(
            f"  tesk filer (its transfer time):  {size / transfer / 1e6:.0f} MB/s -> {size / transfer / 1e6 / best:.2f}x"
        )
        print(f"  filer peak RSS: {rss / 1e6:.0f} MB")
    except Exception:
        print(
            "moto_server log (last lines):\n" + moto_log.read_text(errors="replace")[-3000:], file=sys.stderr
        )
        raise
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(area, ignore_errors=True)


if __name__ == "__main__":
    main()
