"""A real Kubernetes cluster for the tests: k8s-local (../shared/ci/k8s-local) driven with its kubectl."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.results import REPO

NAMESPACE = "flower-jax-stack"
K8S_LOCAL = REPO.parent / "shared" / "ci" / "k8s-local"


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_path: str
    forwards: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def up(cls) -> Cluster:
        done = subprocess.run([str(K8S_LOCAL), "up"], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"k8s-local up failed: {(done.stdout + done.stderr)[-3000:]}")
        [kubeconfig] = [line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("export KUBECONFIG=")]
        cache = Path(os.environ.get("K8S_LOCAL_CACHE", "/var/cache/k8s-local"))
        kubectl = cache / "v1.20.2" / "bin" / "kubectl"
        return cls(kubeconfig, str(kubectl if kubectl.exists() else shutil.which("kubectl")))

    @staticmethod
    def down() -> None:
        subprocess.run([str(K8S_LOCAL), "down", "--purge"], capture_output=True, timeout=300)

    def kubectl(self, *args: str, timeout: float = 900, namespace: str | None = NAMESPACE) -> str:
        argv = [self.kubectl_path, "--kubeconfig", self.kubeconfig, *(["-n", namespace] if namespace else []), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {(done.stdout + done.stderr)[-3000:]}")
        return done.stdout

    def apply_shipped_manifests(self, copy_to: Path) -> None:
        """`kubectl apply -f k8s`, the files as shipped but for the PDB's API version (policy/v1 is 1.21+)."""
        copy_to.mkdir(parents=True)
        for path in sorted((REPO / "k8s").glob("*.yaml")):
            text = path.read_text()
            if "kind: PodDisruptionBudget" in text:
                text = text.replace("apiVersion: policy/v1\nkind: PodDisruptionBudget",
                                    "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget")
            (copy_to / path.name).write_text(text)
        self.kubectl("apply", "-f", str(copy_to), namespace=None)

    def load_offline_dataset(self, parquet: Path) -> None:
        """docs/kubernetes.md's offline steps: the datasets volume, the file copied in, the patch."""
        self.kubectl("apply", "-f", str(REPO / "k8s" / "offline" / "datasets.yaml"), namespace=None)
        self.kubectl("wait", "--for=condition=Ready", "pod/dataset-loader", "--timeout=600s")
        self.kubectl("cp", str(parquet), "dataset-loader:/data/mnist.parquet")
        self.kubectl("delete", "pod", "dataset-loader", "--wait=false")
        patch = (REPO / "k8s" / "offline" / "supernode-patch.yaml").read_text()
        self.kubectl("patch", "statefulset", "supernode", "-p", patch)

    def wait_for_federation(self, supernodes: int) -> None:
        for job in ("certs-init", "register-nodes"):
            self.kubectl("wait", "--for=condition=complete", f"job/{job}", "--timeout=900s", timeout=960)
        for workload in ("deployment/superlink", "deployment/superexec", "statefulset/supernode"):
            self.kubectl("rollout", "status", workload, "--timeout=900s", timeout=960)
        ready = self.kubectl("get", "statefulset", "supernode", "-o", "jsonpath={.status.readyReplicas}")
        assert int(ready or 0) == supernodes, ready
        self.wait_for_activation([f"supernode-{index}" for index in range(supernodes)])

    def wait_for_activation(self, pods: list[str], timeout: float = 600) -> None:
        """Until each pod's SuperNode was activated by the SuperLink. A pod replaced with the same key (the
        offline patch rolls every pod) is refused until its predecessor's session expires (about a minute)."""
        deadline = time.monotonic() + timeout
        for pod in pods:
            while "SuperNode ID" not in self.logs(pod):
                assert time.monotonic() < deadline, f"{pod} was not activated within {timeout:.0f} s"
                time.sleep(2)

    def logs(self, pod: str) -> str:
        """The pod's current container log; empty while it is still being created."""
        try:
            return self.kubectl("logs", pod)
        except RuntimeError:
            return ""

    def secret_file(self, secret: str, key: str) -> str:
        encoded = self.kubectl("get", "secret", secret, "-o", "jsonpath={.data." + key.replace(".", "\\.") + "}")
        return base64.b64decode(encoded).decode()

    def pod(self, selector: str) -> str:
        return self.kubectl("get", "pod", "-l", selector, "-o", "jsonpath={.items[0].metadata.name}")

    def port_forward(self, target: str, local: int, remote: int, timeout: float = 120) -> None:
        argv = [self.kubectl_path, "--kubeconfig", self.kubeconfig, "-n", NAMESPACE, "port-forward", target,
                f"{local}:{remote}"]
        forward = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.forwards.append(forward)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", local), timeout=2).close()
                return
            except OSError:
                if forward.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kubectl port-forward {target} {local}:{remote} did not start") from None
                time.sleep(0.5)

    def close(self) -> None:
        for forward in self.forwards:
            forward.kill()
            forward.wait()
        self.forwards.clear()
