"""The manifests exactly as `kubectl apply -f k8s` reads them (top-level files only, in name order)."""

from __future__ import annotations

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
