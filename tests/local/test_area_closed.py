"""The task area stays closed: a symlink that an executor plants never leads tesk to a host file.

Each case lets a first executor plant links to a host file and a host folder made by the test
(outside the area: the container cannot see them, it only names them), then gives tesk a reason to
touch that path on the host: a later executor's stdin/stdout/stderr or workdir, a folder to create
in a volume, an output file, folder or wildcard, and the clean-up at the end. Nothing outside the
area may be read or written, and the task's log must say which path was refused and why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tesk.models import State
from tests.local.conftest import IMAGE, MakeHarness

pytestmark = pytest.mark.containers

SECRET = "host secret\n"


def plant(*commands: str) -> dict[str, Any]:
    return {"image": IMAGE, "command": ["sh", "-c", "; ".join(commands)]}


def run(**executor: Any) -> dict[str, Any]:
    return {"image": IMAGE, "command": ["sh", "-c", "echo written-by-the-task; echo oops >&2; : > written-by-the-task"], **executor}


# case -> (task body from the host file and folder, words its system_logs must contain, final state)
CASES = {
    "stdin": (
        lambda f, d: {"volumes": ["/vol"], "executors": [
            plant(f"ln -s {f} /vol/in"), {"image": IMAGE, "command": ["cat"], "stdin": "/vol/in"}]},
        ["stdin /vol/in: the symlink /vol/in points to", "which does not exist in the task area"],
        State.SYSTEM_ERROR,
    ),
    "stdout": (
        lambda f, d: {"volumes": ["/vol"], "executors": [plant(f"ln -s {f} /vol/out"), run(stdout="/vol/out")]},
        ["stdout /vol/out: /vol/out is a symlink in the task area; tesk does not create or write"],
        State.SYSTEM_ERROR,
    ),
    "stderr": (
        lambda f, d: {"volumes": ["/vol"], "executors": [plant(f"ln -s {f} /vol/err"), run(stderr="/vol/err")]},
        ["stderr /vol/err: /vol/err is a symlink in the task area"],
        State.SYSTEM_ERROR,
    ),
    # A workdir the image lacks is created in the area and mounted (podman would refuse it); the
    # first executor's workdir is mounted in it, so it can plant a link where the second one's goes.
    "workdir": (
        lambda f, d: {"executors": [{**plant(f"ln -s {d} /wd/sub"), "workdir": "/wd"}, run(workdir="/wd/sub")]},
        ["could not run: workdir /wd/sub: /wd/sub is a symlink in the task area"],
        State.SYSTEM_ERROR,
    ),
    "volume folder": (
        lambda f, d: {"volumes": ["/vol"], "executors": [
            plant(f"ln -s {d} /vol/logs"), run(stdout="/vol/logs/new/out.txt")]},
        ["stdout /vol/logs/new/out.txt: /vol/logs is a symlink in the task area"],
        State.SYSTEM_ERROR,
    ),
    "output file": (
        lambda f, d: {"outputs": [{"path": "/vol/result.txt", "url": "RESULTS/result.txt"}],
                      "executors": [plant(f"ln -s {f} /vol/result.txt")]},
        ["output /vol/result.txt: the symlink /vol/result.txt points to", "nothing was uploaded"],
        State.SYSTEM_ERROR,
    ),
    "output folder": (
        lambda f, d: {"volumes": ["/vol"], "outputs": [{"path": "/vol/dir", "url": "RESULTS/dir", "type": "DIRECTORY"}],
                      "executors": [plant(f"ln -s {d} /vol/dir")]},
        ["output /vol/dir: the symlink /vol/dir points to", "nothing was uploaded"],
        State.SYSTEM_ERROR,
    ),
    # Inside an output folder or among wildcard matches, a link out is skipped with a note (as a
    # dangling link would be) and the task's real files are still uploaded.
    "files in an output folder": (
        lambda f, d: {"volumes": ["/vol"], "outputs": [{"path": "/vol/dir", "url": "RESULTS/dir", "type": "DIRECTORY"}],
                      "executors": [plant("mkdir /vol/dir", "echo ok > /vol/dir/ok.txt", f"ln -s {f} /vol/dir/leak",
                                          f"ln -s {d} /vol/dir/leakdir")]},
        ["skipped /vol/dir/leak: /vol/dir/leak: the symlink /vol/dir/leak points to",
         "skipped /vol/dir/leakdir: /vol/dir/leakdir: the symlink"],
        State.COMPLETE,
    ),
    "wildcard": (
        lambda f, d: {"outputs": [{"path": "/vol/*.txt", "path_prefix": "/vol", "url": "RESULTS/glob"},
                                  {"path": "/vol/*/x.txt", "path_prefix": "/vol", "url": "RESULTS/glob2"}],
                      "executors": [plant("echo ok > /vol/ok.txt", f"ln -s {f} /vol/leak.txt", f"ln -s {d} /vol/sub")]},
        ["skipped /vol/leak.txt: /vol/leak.txt: the symlink /vol/leak.txt points to"],
        State.COMPLETE,
    ),
    "cleanup": (
        lambda f, d: {"volumes": ["/vol"], "executors": [
            plant(f"ln -s {f} /vol/file", f"ln -s {d} /vol/dir", f"ln -s {d}/x.txt /vol/inner")]},
        [],
        State.COMPLETE,
    ),
}


async def test_planted_symlinks_never_lead_tesk_out_of_the_area(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One task per case, all at once on one server (each with its own host file, folder and results).
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("TESK_FILE_ROOTS", str(results))
    harness = await make_harness(default_cpu_cores=0.1)

    async def check(number: int, case: str) -> list[str]:
        host = tmp_path / f"host{number}"
        host.mkdir()
        host_file = host / "secret.txt"
        host_file.write_text(SECRET)
        host_dir = host / "folder"
        host_dir.mkdir()
        (host_dir / "x.txt").write_text(SECRET)
        mine = results / str(number)
        mine.mkdir()
        make_body, says, state = CASES[case]
        body = make_body(host_file, host_dir)
        for out in body.get("outputs", []):
            out["url"] = out["url"].replace("RESULTS", mine.as_uri())
        stored = await harness.run(body, timeout=60)
        await harness.settled(stored.id)

        [attempt] = stored.task.logs or []
        system_logs = "\n".join(attempt.system_logs or [])
        problems = [] if stored.state is state else [f"ended {stored.state.value}: {system_logs}"]
        problems += [f"no {words!r} in {system_logs!r}" for words in says if words not in system_logs]
        everything = system_logs + "".join((e.stdout or "") + (e.stderr or "") for e in attempt.logs)
        if "host secret" in everything:
            problems.append("a host file's content reached the task's log")
        # The host's file and folder are exactly as the test made them: nothing read into the task,
        # nothing written, created or deleted there.
        if (host_file.read_text(), sorted(p.name for p in host.iterdir())) != (SECRET, ["folder", "secret.txt"]):
            problems.append("the host file was changed or something was created next to it")
        if [(p.name, p.read_text()) for p in host_dir.iterdir()] != [("x.txt", SECRET)]:
            problems.append("the host folder was changed")
        uploaded = {p.relative_to(mine).as_posix(): p.read_text() for p in mine.rglob("*") if p.is_file()}
        if any(text != "ok\n" for text in uploaded.values()):
            problems.append(f"uploaded more than the task's own files: {uploaded}")
        if state is State.COMPLETE and body.get("outputs") and not uploaded:
            problems.append("the task's own files were not uploaded")
        if (harness.root / "tasks" / stored.id).exists():
            problems.append("the task's area was not removed")
        return [f"{case}: {problem}" for problem in problems]

    found = await asyncio.gather(*(check(number, case) for number, case in enumerate(CASES)))
    problems = [problem for problems in found for problem in problems]
    assert not problems, "\n".join(problems)
