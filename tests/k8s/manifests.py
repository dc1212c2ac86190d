"""The manifests exactly as `kubectl apply -f k8s` reads them (top-level files only, in name order),
and the StatefulSet patches (k8s/gpu/, k8s/offline/) applied as `kubectl patch` would."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.support.results import REPO

K8S = REPO / "k8s"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def load(folder: Path = K8S) -> list[dict]:
    documents = []
    for path in sorted(folder.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def find(documents: list[dict], kind: str, name: str) -> dict:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def workloads(documents: list[dict]) -> list[dict]:
    return [d for d in documents if d["kind"] in WORKLOADS]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


# The list fields the patches touch, and the key `kubectl patch` (strategic merge) merges their items by.
MERGE_KEYS = {"containers": "name", "env": "name", "volumes": "name", "volumeMounts": "mountPath"}


def strategic_merge(target: dict, patch: dict) -> dict:
    """A copy of `target` with `patch` merged in: maps merge, the lists above merge item by item,
    other lists and values are replaced (enough for our patches; the cluster test checks the real one)."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value)
        elif key in MERGE_KEYS and isinstance(merged.get(key), list):
            items = {item[MERGE_KEYS[key]]: item for item in merged[key]}
            for item in value:
                name = item[MERGE_KEYS[key]]
                items[name] = strategic_merge(items[name], item) if name in items else item
            merged[key] = list(items.values())
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def patched(document: dict, patch_file: Path) -> dict:
    """`kubectl patch <document> -p "$(cat patch_file)"`, offline."""
    return strategic_merge(document, yaml.safe_load(patch_file.read_text()))
