"""StorageClasses, dynamic provisioning and binding of claims, and where a volume may be used.

Why: on a real cluster a claim of a `WaitForFirstConsumer` class stays Pending until the scheduler
puts its first pod on a node; the provisioner then makes a PersistentVolume whose node affinity ties
every later pod to that node's zone (block disks) or to that very node (local-path). A stand-in that
bound at once, anywhere, would hide a backend that places later steps of a task elsewhere.

Two provisioners are built in; each claim's folder lives on this host whatever the node:
* `BLOCK_PROVISIONER`, like a cloud's block-disk CSI driver: the PV is pinned to the zone
  (`topology.kubernetes.io/zone`) and is attached to one node at a time (ReadWriteOnce), which the
  kubelet's `Attachments` enforce with the attach/detach controller's Multi-Attach events;
* `LOCAL_PATH_PROVISIONER`, like rancher's local-path: the PV is pinned to the node's hostname.
Classes with another provisioner bind as the stand-in always did: a PV without node affinity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devcluster.resources import BY_PLURAL
from devcluster.scheduling import selector_matches

if TYPE_CHECKING:
    from devcluster.controllers import EventRecorder
    from devcluster.store import Store

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
BLOCK_PROVISIONER = "block.csi.devcluster.tesk"
LOCAL_PATH_PROVISIONER = "devcluster.tesk/local-path"
ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"
TOPOLOGY_KEYS = {BLOCK_PROVISIONER: ZONE_KEY, LOCAL_PATH_PROVISIONER: HOSTNAME_KEY}
"""The node label each provisioner's PVs are pinned to (a PV of another provisioner is not pinned)."""
ATTACHABLE = frozenset({BLOCK_PROVISIONER})
"""Provisioners whose volumes are attached to a node, so a ReadWriteOnce one is on one node at a time."""
PV_CONTROLLER = "persistentvolume-controller"
WAITING_MESSAGE = "waiting for first consumer to be created before binding"
VOLUME_CONFLICT = "node(s) had volume node affinity conflict"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
FRESH_ROOT_MODES = {LOCAL_PATH_PROVISIONER: 0o777}
"""The mode of a new volume's root folder (owner root:root) by provisioner: rancher's local-path runs
`mkdir -m 0777 -p` in its helper pod; a fresh ext4/xfs file system (block disks) has a 0755 root, and
so has the folder of any other class here (as a `DirectoryOrCreate` hostPath the kubelet makes)."""
BLOCK_ROOT_MODE = 0o755


@dataclass(frozen=True)
class FreshRoot:
    """How a provisioner leaves the root of a new volume (owner root:root)."""

    mode: int
    lost_found: bool  # mkfs.ext4 makes `lost+found` (root:root 0700): a block volume is never empty


def fresh_root(store: Store, pvc: dict[str, Any]) -> FreshRoot:
    """The root the claim's provisioner gives its new volume (block disks are formatted ext4 here)."""
    provisioner = (claim_class(store, pvc) or {}).get("provisioner", "")
    return FreshRoot(FRESH_ROOT_MODES.get(provisioner, BLOCK_ROOT_MODE), provisioner in ATTACHABLE)


def supports_fs_group(volume: dict[str, Any] | None, read_only: bool) -> bool:
    """Whether the kubelet applies the pod's `fsGroup` to this PV when mounting it.

    Only the CSI plugin does here, under the CSIDriver's default `fsGroupPolicy`
    `ReadWriteOnceWithFSType` (csi_mounter.go `supportsFSGroup`): the PV has an `fsType` and its
    access modes include `ReadWriteOnce`, and the mount is not read-only. A hostPath PV (local-path's)
    is never changed: on kind and k3s `fsGroup` does not touch such a volume. Whether newer kubelets
    also count `ReadWriteOncePod` is unconfirmed; the stand-in does not (the stricter reading).
    """
    if volume is None or read_only:
        return False
    csi = (volume.get("spec") or {}).get("csi") or {}
    return bool(csi.get("fsType")) and "ReadWriteOnce" in (volume["spec"].get("accessModes") or [])


def builtin_classes(binding_mode: str) -> list[dict[str, Any]]:
    """The classes a new stand-in has: `standard` (block disks, the default) and `local-path`."""
    def storage_class(name: str, provisioner: str, default: bool) -> dict[str, Any]:
        annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
        return {"metadata": {"name": name, "annotations": annotations}, "provisioner": provisioner,
                "reclaimPolicy": "Delete", "volumeBindingMode": binding_mode, "allowVolumeExpansion": True}

    return [storage_class("standard", BLOCK_PROVISIONER, True),
            storage_class("local-path", LOCAL_PATH_PROVISIONER, False)]


def default_class_name(classes: list[dict[str, Any]]) -> str | None:
    """The DefaultStorageClass admission plugin's choice: the newest class marked default, if any."""
    defaults = [c for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not defaults:
        return None
    return str(max(defaults, key=lambda c: (c["metadata"]["creationTimestamp"], c["metadata"]["name"]))
               ["metadata"]["name"])


def claim_class(store: Store, pvc: dict[str, Any]) -> dict[str, Any] | None:
    """The claim's StorageClass object (None: no class named, or the class does not exist)."""
    name = pvc["spec"].get("storageClassName")
    return store.find("storageclasses", "", name) if name else None


def waits_for_consumer(store: Store, pvc: dict[str, Any]) -> bool:
    """Whether an unbound claim is left for the scheduler to bind (its class is WaitForFirstConsumer)."""
    storage_class = claim_class(store, pvc)
    return storage_class is not None and storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"


def claim_volume(store: Store, pvc: dict[str, Any]) -> dict[str, Any] | None:
    """The PersistentVolume a bound claim uses."""
    name = pvc["spec"].get("volumeName")
    return store.find("persistentvolumes", "", name) if name else None


def node_conflicts(store: Store, pvc: dict[str, Any], node: dict[str, Any]) -> bool:
    """VolumeBinding's filter for a bound claim: its PV's node affinity excludes the node."""
    volume = claim_volume(store, pvc)
    required = ((volume or {}).get("spec", {}).get("nodeAffinity") or {}).get("required")
    return volume is not None and not selector_matches(required, node)


def exclusive(volume: dict[str, Any]) -> bool:
    """Whether the attach/detach controller attaches the PV to one node at a time."""
    driver = ((volume.get("spec") or {}).get("csi") or {}).get("driver")
    modes = set(volume["spec"].get("accessModes") or [])
    return driver in ATTACHABLE and not modes & {"ReadWriteMany", "ReadOnlyMany"}


def provision(store: Store, events: EventRecorder, pvc: dict[str, Any], node: dict[str, Any] | None) -> bool:
    """Make the claim's PV (pinned to the node's topology when the class asks for it) and bind both.

    Returns False when the claim changed or went meanwhile; the next pass tries again.
    """
    meta = pvc["metadata"]
    storage_class = claim_class(store, pvc) or {}
    provisioner = storage_class.get("provisioner", "")
    name = f"pvc-{meta['uid']}"
    spec: dict[str, Any] = {
        "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
        "accessModes": list(pvc["spec"].get("accessModes") or []),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy", "Delete"),
        "storageClassName": pvc["spec"].get("storageClassName") or "",
        "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
        "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta["namespace"],
                     "name": meta["name"], "uid": meta["uid"]},
    }
    if provisioner in ATTACHABLE:
        spec["csi"] = {"driver": provisioner, "volumeHandle": name, "fsType": "ext4"}
    else:
        spec["hostPath"] = {"path": f"/var/lib/devcluster/volumes/{name}", "type": "DirectoryOrCreate"}
    key = TOPOLOGY_KEYS.get(provisioner)
    if key and node is not None:
        value = (node["metadata"].get("labels") or {}).get(key, "")
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]}}
    if store.find("persistentvolumes", "", name) is None:
        store.create(BY_PLURAL["persistentvolumes"], "", {
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner}},
            "spec": spec})
        volume = store.find("persistentvolumes", "", name)
        assert volume is not None
        volume["status"] = {"phase": "Bound"}
        store.update(BY_PLURAL["persistentvolumes"], "", name, volume, "status")
        events.record(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}",
                      provisioner or PV_CONTROLLER)
    claim = store.find("persistentvolumeclaims", meta["namespace"], meta["name"])
    if claim is None or claim["metadata"]["uid"] != meta["uid"]:
        return False
    claim["spec"]["volumeName"] = name
    if node is not None and storage_class.get("volumeBindingMode") == "WaitForFirstConsumer":
        claim["metadata"].setdefault("annotations", {})[SELECTED_NODE_ANNOTATION] = node["metadata"]["name"]
    claim["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
    store.update(BY_PLURAL["persistentvolumeclaims"], meta["namespace"], meta["name"], claim)
    current = store.find("persistentvolumeclaims", meta["namespace"], meta["name"])
    if current is None:
        return False
    current["status"] = {"phase": "Bound", "accessModes": spec["accessModes"], "capacity": dict(spec["capacity"])}
    store.update(BY_PLURAL["persistentvolumeclaims"], meta["namespace"], meta["name"], current, "status")
    return True


def reclaim(store: Store) -> None:
    """Reclaim policy Delete: a PV whose claim is gone goes too (Retain keeps it, Released)."""
    for volume in list(store.scan("persistentvolumes")):
        ref = volume["spec"].get("claimRef")
        if not ref or volume["metadata"].get("deletionTimestamp"):
            continue
        claim = store.find("persistentvolumeclaims", ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and claim["metadata"]["uid"] == ref.get("uid"):
            continue
        name = volume["metadata"]["name"]
        if volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            store.delete(BY_PLURAL["persistentvolumes"], "", name)
        elif (volume.get("status") or {}).get("phase") != "Released":
            current = store.find("persistentvolumes", "", name)
            if current is not None:
                current["status"] = {"phase": "Released"}
                store.update(BY_PLURAL["persistentvolumes"], "", name, current, "status")
