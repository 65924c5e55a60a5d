"""Label sanitising and the name/label checks kubernetes-validate does not do."""

from __future__ import annotations

import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.config.kubernetes import KubernetesSettings
from tesk.store import new_task_id


@pytest.mark.parametrize("raw", ["alice", "anonymousUser", "a.b-c_d", "x" * 63])
def test_label_safe_keeps_valid_values(raw: str) -> None:
    assert lb.label_safe(raw) == raw


@pytest.mark.parametrize("raw", ["alice@example.org", "urn:geant:elixir-europe.org:group:elixir:EBI#perun",
                                 "x" * 64, "-leading", "trailing.", "ünïcode", "@@@", ""])
def test_label_safe_makes_valid_distinct_values(raw: str) -> None:
    value = lb.label_safe(raw)
    assert lb.is_label_value(value)
    if raw:
        assert value != lb.label_safe(raw + "!")


def test_different_users_never_share_a_label() -> None:
    assert lb.label_safe("a@b.org") != lb.label_safe("a_b.org")


def test_task_ids_fit_every_child_name() -> None:
    task_id = new_task_id()
    assert lb.check_task_id(task_id) == task_id
    for role in lb.Role:
        name = lb.child_name(task_id, role, 99 if role is lb.Role.EXECUTOR else None)
        assert len(name) + 6 <= 63 and lb.check_dns_label(name, "name")


def test_bad_names_and_labels_are_reported() -> None:
    obj: dict[str, object] = {"kind": "Job", "metadata": {"name": "Bad_Name", "labels": {"ok": "x" * 64, "bad key!": "v"}},
           "spec": {"template": {"metadata": {"labels": {"a": "-x"}}}}}
    problems = lb.check_object_names(obj)
    assert len(problems) == 4, problems


def test_bad_namespace_is_refused_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESK_API_K8S_NAMESPACE", "Not_A_Namespace")
    with pytest.raises(ValueError, match="TESK_API_K8S_NAMESPACE"):
        KubernetesSettings()


def test_seed_environment_passes_through_with_the_prefix_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESK_API_TASKMASTER_ENVIRONMENT_HOST_BASE_PATH", "/mnt/x")
    monkeypatch.setenv("TESK_API_TASKMASTER_ENVIRONMENT_EXECUTOR_BACKOFF_LIMIT", "1")
    monkeypatch.setenv("TESK_API_TASKMASTER_EXECUTOR_SECRET_MOUNT_PATH", "/creds")
    s = KubernetesSettings()
    assert s.environment == {"EXECUTOR_BACKOFF_LIMIT": "1", "HOST_BASE_PATH": "/mnt/x"}
    assert s.executor_secret_mount_path == "/creds"
    assert s.backoff_limit("EXECUTOR") == 1
