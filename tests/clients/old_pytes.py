"""py-tes 0.4.2, the version Snakemake's TES plugin, Toil and cwl-tes pin, beside the test's py-tes 1.x.

Both versions are the importable package `tes`, so 0.4.2 is installed once into a cache folder
(`pip install --no-deps --target`; its dependencies attrs, requests and python-dateutil are the
test environment's) and driven in a child process whose `sys.path` starts there. `run()` sends the
child a short program and returns what it printed as JSON: what the client concluded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

VERSION = "0.4.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tesk-tests" / f"py-tes-{VERSION}"


def install() -> Path:
    """The folder holding py-tes 0.4.2's `tes` package, installed on first use."""
    if (CACHE / "tes" / "client.py").is_file():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as staging:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", staging, f"py-tes=={VERSION}"],
            check=True, timeout=300,
        )
        try:
            os.rename(staging, CACHE)  # atomic: a parallel test run sees all of it or none
        except OSError:
            if not (CACHE / "tes" / "client.py").is_file():
                raise
        else:
            os.mkdir(staging)  # for TemporaryDirectory's clean-up
    return CACHE


def run(program: str, **values: Any) -> Any:
    """Run `program` under py-tes 0.4.2 with `values` as globals; it sets `result`, returned here."""
    prelude = (
        "import json, sys, tes\n"
        f"assert tes.__version__ == {VERSION!r}, tes.__file__\n"
        "globals().update(json.loads(sys.stdin.read()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + program + "\nprint(json.dumps(result, default=str))"],
        input=json.dumps(values), capture_output=True, text=True, timeout=120,
        env=os.environ | {"PYTHONPATH": str(install())},
    )
    if done.returncode != 0:
        raise AssertionError(f"py-tes {VERSION} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])
