"""Replay a client fixture (tests/clients/fixtures/*.yaml) against a live server and conclude as the client.

A fixture writes down, from the client's own code, the requests it sends (routes, query strings,
headers, the task body with its nulls and extra keys) and what it reads to decide a task's fate
(`reads`: the states its parser knows, the states it treats as terminal, where it finds the exit code).
`Replay` sends exactly those requests with httpx and applies those rules to the answers, so a test
can assert what the client would conclude. Polling is every 0.2 s here, not the client's interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

FIXTURES = Path(__file__).parent / "fixtures"

SCRIPTS = {
    "success": "echo hello",
    "failure": "echo failing >&2; exit 3",
    "cancel": "sleep 60",
}
"""The shell line each scenario runs inside the client's task shape."""


def load(name: str) -> dict[str, Any]:
    fixture: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return fixture


def substitute(value: Any, values: dict[str, str]) -> Any:
    """`{name}` placeholders replaced in every string of a parsed fixture (never in keys' structure)."""
    if isinstance(value, str):
        for key, text in values.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {substitute(k, values): substitute(v, values) for k, v in value.items()}
    return value


def lookup(body: Any, path: str) -> Any:
    """`logs[0].logs[-1].exit_code` in a JSON body; raises (IndexError, KeyError, TypeError) as the
    client's own accessor would."""
    for part in path.split("."):
        name, _, rest = part.partition("[")
        body = body[name]
        while rest:
            index, _, rest = rest.partition("]")
            body = body[int(index)]
            rest = rest.removeprefix("[")
    return body


@dataclass
class Conclusion:
    """What the client would decide about one task."""

    task_id: str
    state: str
    seen: list[str] = field(default_factory=list)
    unprompted: list[str] = field(default_factory=list)
    outcome: str | None = None
    exit_code: int | None = None
    final: dict[str, Any] = field(default_factory=dict)


class Replay:
    def __init__(self, fixture_name: str, server: str, work: Path, scenario: str) -> None:
        self.work = work
        self.values = {"server": server, "work": str(work), "script": SCRIPTS[scenario]}
        raw = load(fixture_name)
        self.values["endpoint"] = substitute(raw["endpoint"], self.values)
        self.fixture: dict[str, Any] = substitute(raw, self.values)
        self.reads: dict[str, Any] = self.fixture["reads"]
        self.http = httpx.Client(timeout=30, headers=self.fixture["headers"])
        for name, text in self.fixture.get("files", {}).items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)

    def close(self) -> None:
        self.http.close()

    def send(self, route: str, task_id: str = "", body: Any = None) -> httpx.Response:
        spec = self.fixture[route]
        url = spec["path"].replace("{id}", task_id)
        content = None if body is None else httpx.Request("POST", url, json=body).content
        return self.http.request(spec["method"], url, params=spec.get("query"), content=content)

    def create(self) -> str:
        response = self.send("create", body=self.fixture["task"])
        assert response.status_code == 200, response.text
        task_id: str = response.json()["id"]
        return task_id

    def poll(self, task_id: str) -> str:
        response = self.send("poll", task_id)
        assert response.status_code == 200, response.text
        state: str = response.json()["state"]
        return state

    def follow(self, task_id: str, until: set[str] | None = None, timeout: float = 90) -> Conclusion:
        """Poll as the client does until a state it treats as terminal (or one of `until`)."""
        stop = until or set(self.reads["terminal"])
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            state = self.poll(task_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in stop:
                break
            assert time.monotonic() < deadline, f"{self.fixture['client']}: task {task_id} stuck in {seen}"
            time.sleep(0.2)
        return Conclusion(task_id, state, seen)

    def conclude(self, result: Conclusion) -> Conclusion:
        """Read the final answer and apply the client's rules for outcome and exit code."""
        if "final" in self.fixture:
            response = self.send("final", result.task_id)
            assert response.status_code == 200, response.text
            result.final = response.json()
        result.outcome = self.reads.get("outcome", {}).get(result.state)
        rules = self.reads.get("exit_code", {})
        rule = rules.get(result.state, rules.get("*"))
        if isinstance(rule, int):
            result.exit_code = rule
        elif isinstance(rule, str):
            result.exit_code = self._exit_code(rule, result)
        return result

    def _exit_code(self, rule: str, result: Conclusion) -> int | None:
        if rule.startswith("file:"):
            return int((self.work / rule.removeprefix("file:")).read_text())
        if rule == "last_int_exit_code":  # Toil: the last executor log with an int exit_code; else 0
            body = result.final or self.send("poll", result.task_id).json()
            codes = [e["exit_code"] for log in body.get("logs", []) for e in log["logs"]
                     if isinstance(e.get("exit_code"), int)]
            return codes[-1] if codes else 0
        try:
            code = lookup(result.final, rule)
        except (IndexError, KeyError, TypeError):
            return self.reads.get("exit_code_unreadable")
        assert isinstance(code, int), f"{rule} is {code!r}, not an integer"
        return code
