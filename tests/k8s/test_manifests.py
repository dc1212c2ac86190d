"""What can be proven about the manifests without a cluster: schema-valid, and built to the
stack's production rules."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.k8s.manifests import K8S, find, load, patched, pod_spec, workloads

BASE = load()
GPU_PATCH = K8S / "gpu" / "supernode-patch.yaml"
GPU = [patched(find(BASE, "StatefulSet", "supernode"), GPU_PATCH)]  # the StatefulSet as GPU nodes run it
OFFLINE = [d for d in load(K8S / "offline") if "kind" in d]  # the StatefulSet patch is not an object
KUBERNETES_VERSION = "1.34.0"


@pytest.mark.parametrize("document", BASE + GPU + OFFLINE, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_validates_against_the_official_schema(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_plain_apply_no_kustomization_in_the_folder():
    assert not (K8S / "kustomization.yaml").exists()
    namespaced = [d for d in BASE if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced + GPU} == {"flower-jax-stack"}
    assert BASE[0]["kind"] == "Namespace", "the namespace is applied first"


@pytest.mark.parametrize("workload", workloads(BASE + GPU), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_containers_are_restricted_with_resources(workload):
    spec = pod_spec(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
        assert "--insecure" not in " ".join(container.get("command", []) + container.get("args", []))


@pytest.mark.parametrize("workload", [w for w in workloads(BASE + GPU) if w["kind"] != "Job"], ids=lambda d: d["metadata"]["name"])
def test_long_running_containers_have_meaningful_probes_and_mount_the_tls_secret(workload):
    spec = pod_spec(workload)
    [container] = spec["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["python3", "/opt/fjs/healthcheck.py"], probe
    secrets = {v["secret"]["secretName"]: v["name"] for v in spec["volumes"] if "secret" in v}
    assert "superlink-tls" in secrets
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert set(secrets.values()) <= mounted


def test_superlink_keeps_state_on_a_claim_and_serves_tls():
    superlink = find(BASE, "Deployment", "superlink")
    args = pod_spec(superlink)["containers"][0]["args"]
    assert "--ssl-certfile=/certs/server.pem" in args and "--isolation=process" in args
    assert "--database=/home/flwr/state/superlink.db" in args
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod_spec(superlink)["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["superlink-state"] and superlink["spec"]["strategy"]["type"] == "Recreate"
    service = find(BASE, "Service", "superlink")
    assert {p["port"] for p in service["spec"]["ports"]} == {9092, 9093, 9095}  # Fleet, Control, metrics


@pytest.mark.parametrize("statefulset", [find(BASE, "StatefulSet", "supernode"), find(GPU, "StatefulSet", "supernode")])
def test_supernodes_take_their_key_slot_from_the_pod_ordinal_and_their_partition_from_the_run(statefulset):
    env = {e["name"]: e for e in pod_spec(statefulset)["containers"][0]["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert "PARTITION_ID" not in env and "NUM_PARTITIONS" not in env, "scaling needs no other edit"


@pytest.mark.parametrize("workload", [w for w in workloads(BASE + GPU) if w["kind"] != "Job"],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_long_running_pod_has_an_init_that_reaps_orphans(workload):
    assert pod_spec(workload)["shareProcessNamespace"] is True


def test_the_offline_patch_mounts_the_datasets_claim_read_only_where_the_supernode_reads_it():
    offline = patched(find(BASE, "StatefulSet", "supernode"), K8S / "offline" / "supernode-patch.yaml")
    kubernetes_validate.validate(offline, KUBERNETES_VERSION, strict=True)
    [container] = pod_spec(offline)["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "datasets"]
    assert mount["readOnly"] and env["DATASET"].startswith(mount["mountPath"] + "/")
    assert find(OFFLINE, "PersistentVolumeClaim", "datasets")


def test_gpu_variant_requests_gpus_and_the_base_does_not():
    base = pod_spec(find(BASE, "StatefulSet", "supernode"))["containers"][0]
    [gpu] = pod_spec(find(GPU, "StatefulSet", "supernode"))["containers"]
    assert "nvidia.com/gpu" not in base["resources"]["limits"] and gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["image"].endswith("-cuda") and base["image"].endswith("-cpu")
    env = {e["name"]: e.get("value") for e in gpu["env"]}
    assert env["FJS_EXPECT_GPU"] == "1" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert set(env) > {e["name"] for e in base["env"]}, "the base's settings (POD_INDEX, ...) stay"
    assert "kind" not in yaml.safe_load(GPU_PATCH.read_text()), "a patch of the base, never a copy of it"


def _selected_pods(peers: list[dict]) -> set[str]:
    """Components a NetworkPolicy rule admits; every peer must be a pod of this namespace."""
    assert all(set(peer) == {"podSelector"} for peer in peers), "no namespaceSelector/ipBlock: this namespace only"
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in peers}


def _components_that_reach(port: int) -> set[str]:
    policy = find(BASE, "NetworkPolicy", "superlink-ingress")
    rules = [rule for rule in policy["spec"]["ingress"] if port in [p["port"] for p in rule["ports"]]]
    assert rules and all("from" in rule for rule in rules), f"port {port} is open to any source"
    return set().union(*(_selected_pods(rule["from"]) for rule in rules))


def test_only_supernodes_reach_the_fleet_api_and_everything_else_is_denied():
    deny = find(BASE, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and deny["spec"]["policyTypes"] == ["Ingress"]
    assert _components_that_reach(9092) == {"supernode"}


def test_only_the_superexec_and_the_register_job_reach_the_control_api():
    # Not enforced by the local 1.20 test cluster (no enforcing CNI): checked here, structurally.
    assert _components_that_reach(9093) == {"superexec", "register-nodes"}
    components = {pod_spec(w)["containers"][0]["name"]: w["spec"]["template"]["metadata"]["labels"]
                  ["app.kubernetes.io/component"] for w in workloads(BASE)}
    assert components["superexec"] == "superexec" and components["register-nodes"] == "register-nodes"


def test_key_material_is_made_in_cluster_by_a_narrow_role():
    role = find(BASE, "Role", "certs-init")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["superlink-tls", "supernode-keys", "metrics-tls"],
         "verbs": ["get"]},
    ]
    job = find(BASE, "Job", "certs-init")
    assert pod_spec(job)["serviceAccountName"] == "certs-init"
    assert pod_spec(job)["containers"][0]["command"][:4] == ["python3", "-m", "pki", "k8s-init"]
    for workload in workloads(BASE + GPU):
        if workload["metadata"]["name"] != "certs-init":
            assert pod_spec(workload)["automountServiceAccountToken"] is False, "only the certs Job talks to the API"


def test_node_authentication_is_on_and_each_supernode_gets_the_key_slots():
    args = pod_spec(find(BASE, "Deployment", "superlink"))["containers"][0]["args"]
    assert "--enable-supernode-auth" in args
    for statefulset in (find(BASE, "StatefulSet", "supernode"), find(GPU, "StatefulSet", "supernode")):
        spec = pod_spec(statefulset)
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        keys = next(v for v in spec["volumes"] if v["name"] == mounts["/node-keys"])
        assert keys["secret"]["secretName"] == "supernode-keys" and keys["secret"]["defaultMode"] == 0o440
    register = pod_spec(find(BASE, "Job", "register-nodes"))["containers"][0]
    assert register["command"][:4] == ["python3", "-m", "pki", "register"]


def test_every_object_carries_the_recommended_labels():
    for document in BASE + GPU:
        labels = document["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "flower-jax-stack", document["metadata"]["name"]
    for workload in workloads(BASE + GPU):
        template = workload["spec"]["template"]["metadata"]["labels"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/version"} <= set(template)


def test_every_image_tag_and_version_label_is_the_projects_one_version():
    """One version string, pyproject.toml's: every manifest's image tag and version label, and compose's
    FJS_VERSION default, say it (plain `kubectl apply -f k8s` leaves no room for a variable; this names each
    line a release must change)."""
    import re
    import tomllib

    from tests.support.results import REPO

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    found = []
    for path in sorted(K8S.rglob("*.yaml")) + sorted(REPO.glob("compose*.yaml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for tag in re.findall(r"image: flower-jax-stack/[\w-]+:([\w.]+?)(?:-(?:cpu|cuda))?\s*$", line) + \
                    re.findall(r"app\.kubernetes\.io/version: \"([^\"]+)\"", line) + \
                    re.findall(r"\$\{FJS_VERSION:-([^}]+)\}", line):
                found.append((f"{path.relative_to(REPO)}:{number}", tag))
    assert len(found) > 20, found
    assert [where for where, tag in found if tag != version] == [], f"set them to {version}"


def test_nodes_and_the_superexec_serve_metrics_with_their_own_certificate_to_prometheus_only():
    for workload in (find(BASE, "StatefulSet", "supernode"), find(GPU, "StatefulSet", "supernode"),
                     find(BASE, "Deployment", "superexec")):
        spec, template = pod_spec(workload), workload["spec"]["template"]["metadata"]
        assert template["annotations"]["prometheus.io/port"] == "9095"
        assert template["annotations"]["prometheus.io/scheme"] == "https"
        [container] = spec["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["FJS_METRICS_PORT"] == "9095" and env["FJS_METRICS_CERT"].startswith("/metrics-tls/")
        secrets = {volume["secret"]["secretName"]: volume["secret"] for volume in spec["volumes"] if "secret" in volume}
        assert [item["key"] for item in secrets["superlink-tls"]["items"]] == ["ca.crt"], "never the SuperLink's key"
        assert secrets["metrics-tls"]["optional"] is True, "a cluster whose CA predates metrics-tls still starts"
    [policy] = [d for d in BASE if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "metrics-ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9095}]
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
