"""The tesk wheel holds the product only: the stand-in cluster (./devcluster) is its own distribution,
installed beside tesk for the tests, never shipped in tesk's wheel or requirements."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_tesk_and_nothing_of_the_stand_in(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("tesk-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert {name.split("/")[0] for name in names} == {"tesk", wheel.name.split("-py")[0] + ".dist-info"}
    assert "tesk/api/app.py" in names
    assert not [name for name in names if "devcluster" in name]
    assert not [req for req in metadata.get_all("Requires-Dist") or [] if req.lower().startswith(("devcluster", "pytest"))
                and "extra ==" not in req]
