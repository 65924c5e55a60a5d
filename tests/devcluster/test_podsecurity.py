"""The Pod Security Standards' checks (devcluster.podsecurity): reasons and details as kube-apiserver
writes them."""

from __future__ import annotations

from typing import Any

import pytest
from devcluster.podsecurity import forbidden_message, violations

SAFE = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"containers": list(containers), **spec}


def container(name: str = "main", **context: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "securityContext": {**SAFE, **context}}


def test_a_pod_meeting_restricted_passes_every_level() -> None:
    spec = pod(container(), volumes=[{"name": "work", "emptyDir": {}}])
    assert [violations(spec, level) for level in ("privileged", "baseline", "restricted")] == [[], [], []]


def test_a_bare_container_breaks_the_four_restricted_defaults_in_the_apiservers_order() -> None:
    spec = pod({"name": "c", "image": "busybox"})
    assert forbidden_message("x", "restricted", "latest", violations(spec, "restricted")) == (
        'pods "x" is forbidden: violates PodSecurity "restricted:latest": '
        "allowPrivilegeEscalation != false "
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")'
    )
    assert violations(spec, "baseline") == []


def test_baseline_refuses_host_namespaces_and_privileged_before_the_restricted_checks() -> None:
    spec = pod(
        container("a", privileged=True), container("b", privileged=True), hostNetwork=True, hostPID=True
    )
    assert violations(spec, "baseline") == [
        ("host namespaces", "hostNetwork=true, hostPID=true"),
        ("privileged", 'containers "a", "b" must not set securityContext.privileged=true'),
    ]
    assert violations(spec, "restricted")[:2] == violations(spec, "baseline")


def test_pod_level_settings_cover_containers_and_explicit_bad_values_are_named() -> None:
    bare = {
        "name": "c",
        "image": "busybox",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    covered = pod(bare, securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Localhost"}})
    assert violations(covered, "restricted") == []
    spec = pod(
        container("c", runAsNonRoot=False, runAsUser=0, seccompProfile={"type": "Unconfined"}),
        securityContext={"runAsUser": 0},
    )
    assert violations(spec, "restricted") == [
        ("runAsNonRoot != true", 'container "c" must not set securityContext.runAsNonRoot=false'),
        ("runAsUser=0", 'pod and container "c" must not set runAsUser=0'),
        ("seccompProfile", 'container "c" must not set securityContext.seccompProfile.type to "Unconfined"'),
    ]


def test_added_capabilities_beyond_net_bind_service_and_restricted_volumes() -> None:
    spec = pod(
        container("c", capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]}),
        initContainers=[{"name": "i", "image": "busybox", "securityContext": SAFE}],
        volumes=[{"name": "host", "hostPath": {"path": "/"}}, {"name": "spec", "configMap": {"name": "s"}}],
    )
    assert violations(spec, "restricted") == [
        (
            "unrestricted capabilities",
            'container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add',
        ),
        ("restricted volume types", 'volume "host" uses restricted volume type "hostPath"'),
    ]


def test_an_unknown_level_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError,
        match="unknown Pod Security level 'strict': expected one of privileged, baseline, restricted",
    ):
        violations(pod(container()), "strict")


def test_baseline_refuses_host_paths_host_ports_and_capabilities_beyond_the_default_set() -> None:
    spec = pod(
        {"name": "a", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}],
         "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
        {"name": "b", "image": "busybox", "ports": [{"containerPort": 443, "hostPort": 443}],
         "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        volumes=[{"name": "logs", "hostPath": {"path": "/var/log"}}, {"name": "work", "emptyDir": {}},
                 {"name": "data", "hostPath": {"path": "/data"}}],
    )
    assert violations(spec, "baseline") == [
        ("non-default capabilities",
         'containers "a", "b" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add'),
        ("hostPath volumes", 'volumes "logs", "data"'),
        ("hostPort", 'containers "a", "b" use hostPorts 443, 8080'),
    ]
    one = pod({"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 80}]},
              volumes=[{"name": "logs", "hostPath": {"path": "/var/log"}}])
    assert violations(one, "baseline") == [("hostPath volumes", 'volume "logs"'),
                                           ("hostPort", 'container "c" uses hostPort 80')]
    allowed = pod({"name": "d", "image": "busybox", "securityContext": {"capabilities": {"add": ["CHOWN", "KILL"]}}})
    assert violations(allowed, "baseline") == []
