"""What each executor used, in a task's log metadata (issue 14, item 3).

Keys of the last TaskLog's `metadata` (a TES map of strings, in the BASIC and FULL views), one set
per executor that ran, `<i>` its 0-based index in `executors`:

- `tesk.executor.<i>.wall_seconds`: its end time minus its start time, every backend;
- `tesk.executor.<i>.peak_memory_bytes`: the highest memory use of its container (cgroup; on
  Kubernetes as the kubelet's sampled figures showed it), or with the local process engine of its
  largest process (rusage), where the backend can measure it;
- `tesk.executor.<i>.cpu_seconds`: the CPU time its container or processes used (user + system),
  likewise.

A key the backend could not measure is absent, never 0 or a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from tesk.models import TaskLog

PREFIX = "tesk.executor."


def usage_key(index: int, name: str) -> str:
    return f"{PREFIX}{index}.{name}"


@dataclass(frozen=True)
class ResourceUsage:
    """One executor's measured use; None where it was not measured."""

    wall_seconds: float
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None

    def record(self, log: TaskLog, index: int) -> None:
        """Add this executor's keys to `log.metadata`, keeping the other keys."""
        keys = {usage_key(index, "wall_seconds"): f"{self.wall_seconds:.3f}"}
        if self.peak_memory_bytes is not None:
            keys[usage_key(index, "peak_memory_bytes")] = str(self.peak_memory_bytes)
        if self.cpu_seconds is not None:
            keys[usage_key(index, "cpu_seconds")] = f"{self.cpu_seconds:.3f}"
        log.metadata = (log.metadata or {}) | keys


def usage_of(log: TaskLog | None, index: int) -> ResourceUsage | None:
    """Executor `index`'s use as recorded in `log.metadata`, or None if it has no wall time there.

    A value that does not parse counts as not measured: the metadata is a map of strings that
    tesk wrote, so a malformed value is a bug to survive, never a number to report.
    """
    metadata = (log.metadata if log else None) or {}
    wall = _float(metadata.get(usage_key(index, "wall_seconds")))
    if wall is None:
        return None
    peak = metadata.get(usage_key(index, "peak_memory_bytes"), "")
    return ResourceUsage(wall, int(peak) if peak.isdigit() else None,
                         _float(metadata.get(usage_key(index, "cpu_seconds"))))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
