"""Executor log tails are the last bytes of each stream (R6), read from the stand-in's pod log API.

The API server has no "last bytes": `limitBytes` keeps the first bytes of what it would send, and
`tailLines` may not be combined with one stream (the stand-in refuses that as kube-apiserver does).
Each case compares `Kube.read_log` with the end of the whole log read in one go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from devcluster import DevCluster
from devcluster.cluster import fast_config
from tesk.backends.kubernetes.kube import Kube, KubeError, load_api_client

LIMIT = 64 * 1024
SCRIPTS = {
    # 2000 numbered lines of 1000 bytes: the last 1000 lines hold more than a read's 4 x LIMIT cap
    "long lines": "awk 'BEGIN{pad=sprintf(\"%0995d\", 0); for(i=1;i<=2000;i++) printf \"%04d%s\\n\", i, pad}'",
    # one line longer than the cap, after a few short ones
    "one huge line": "seq 1 50; awk 'BEGIN{for(i=1;i<=60000;i++) printf \"%06d\", i; print \"\"}'",
    # 9000 short lines: the last 1000 fall short of LIMIT
    "short lines": "seq 1 9000",
    # stdout and stderr interleaved, stderr last
    "both streams": "awk 'BEGIN{for(i=1;i<=3000;i++){printf \"out%05d %0100d\\n\", i, 0; "
                    "printf \"err%05d %0100d\\n\", i, 0 > \"/dev/stderr\"}}'",
}


def run_pod(kube: Kube, name: str, script: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "alpine", "command": ["sh", "-c", script]}]}})
    deadline = time.monotonic() + 60
    while ((kube.get("Pod", name) or {}).get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline, f"pod {name} did not finish"
        time.sleep(0.2)


def whole_log(kube: Kube, pod: str, stream: str | None = None) -> str:
    query = {"container": "main", "stream": stream}
    return kube._call("whole log", "get", "GET", "Pod", pod, "log", query=query).decode()


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Kube]]:
    """The strict profile (PodLogsQuerySplitStreams off, as on every managed cluster) and one with the gate on."""
    tmp = tmp_path_factory.mktemp("logs")
    with DevCluster(fast_config(state_dir=tmp / "combined")) as combined, \
            DevCluster(fast_config(state_dir=tmp / "split", pod_logs_query_split_streams=True)) as split:
        yield {name: Kube(load_api_client(dev.write_kubeconfig(tmp / f"{name}.kubeconfig")), "default")
               for name, dev in (("combined", combined), ("split", split))}


@pytest.mark.parametrize("case", list(SCRIPTS))
def test_the_combined_tail_is_the_last_bytes_of_the_log(clusters: dict[str, Kube], case: str) -> None:
    kube = clusters["combined"]
    pod = case.replace(" ", "-")
    run_pod(kube, pod, SCRIPTS[case])
    whole = whole_log(kube, pod)
    assert len(whole) > 5000
    assert kube.read_log(pod, "main", LIMIT) == whole[-LIMIT:]


def test_each_split_stream_tail_is_the_last_bytes_of_that_stream(clusters: dict[str, Kube]) -> None:
    kube = clusters["split"]
    run_pod(kube, "both", SCRIPTS["both streams"])
    for stream, prefix in (("Stdout", "out"), ("Stderr", "err")):
        whole = whole_log(kube, "both", stream)
        assert len(whole) > 4 * LIMIT and whole.endswith(f"{prefix}03000 {0:0100d}\n")
        assert kube.read_log("both", "main", LIMIT, stream) == whole[-LIMIT:]


def test_tail_lines_with_one_stream_is_refused_as_kube_apiserver_refuses_it(clusters: dict[str, Kube]) -> None:
    kube = clusters["split"]
    run_pod(kube, "refused", "echo hi")
    with pytest.raises(KubeError) as refused:
        kube._call("log", "get", "GET", "Pod", "refused", "log", query={"stream": "Stdout", "tailLines": 5})
    assert refused.value.status == 422
    assert "`tailLines` and specific `stream` are mutually exclusive for now" in str(refused.value)
    with pytest.raises(KubeError) as unsupported:
        kube._call("log", "get", "GET", "Pod", "refused", "log", query={"stream": "Both"})
    assert unsupported.value.status == 422 and 'Unsupported value: "Both"' in str(unsupported.value)
    assert kube._call("log", "get", "GET", "Pod", "refused", "log", query={"stream": "All", "tailLines": 5}) == b"hi\n"

