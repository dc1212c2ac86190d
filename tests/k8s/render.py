"""Turn a pod template from the manifests into a `docker run` command line, as faithfully as Docker
allows: image, command, args, env (the pod-index label included), securityContext, Secret and
ConfigMap files, volumes (owned by fsGroup, as Kubernetes makes them) and Service names as network
aliases."""

from __future__ import annotations

import os
from pathlib import Path

POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"


def docker_run(
    pod: dict,
    name: str,
    network: str,
    scratch: Path,
    objects: dict[str, Path],
    aliases: list[str] = (),
    ordinal: int | None = None,
    extra: list[str] = (),
) -> list[str]:
    [container] = pod["containers"]
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user, group = context["runAsUser"], context.get("runAsGroup", context["runAsUser"])
    argv = ["docker", "run", "-d", "--name", name, "--network", network, "--user", f"{user}:{group}"]
    argv += [arg for alias in aliases for arg in ("--network-alias", alias)]
    if context.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges:true"]
    argv += [f"--cap-drop={cap}" for cap in context.get("capabilities", {}).get("drop", [])]
    for variable in container.get("env", []):
        argv += ["-e", f"{variable['name']}={_env_value(variable, ordinal)}"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        argv += _mount(volumes[mount["name"]], mount, scratch / name, objects, context.get("fsGroup", group))
    argv += list(extra)
    command = container.get("command", [])
    if command:
        argv += ["--entrypoint", command[0]]
    return [*argv, container["image"], *command[1:], *container.get("args", [])]


def _env_value(variable: dict, ordinal: int | None) -> str:
    if "value" in variable:
        return variable["value"]
    field = variable["valueFrom"]["fieldRef"]["fieldPath"]
    if field != POD_INDEX_LABEL or ordinal is None:
        raise ValueError(f"cannot render env {variable['name']} from {field}")
    return str(ordinal)


def _mount(volume: dict, mount: dict, scratch: Path, objects: dict[str, Path], fs_group: int) -> list[str]:
    """objects: a folder with the files of each Secret and ConfigMap, by object name."""
    target = mount["mountPath"]
    read_only = ",readonly" if mount.get("readOnly") else ""
    if "secret" in volume or "configMap" in volume:
        files = objects[volume["secret"]["secretName"] if "secret" in volume else volume["configMap"]["name"]]
        if "subPath" in mount:
            return ["--mount", f"type=bind,source={files / mount['subPath']},target={target}{read_only}"]
        return ["--mount", f"type=bind,source={files},target={target}{read_only}"]
    if volume.get("emptyDir", {}).get("medium") == "Memory":
        return ["--tmpfs", f"{target}:uid={fs_group},gid={fs_group},mode=0770"]
    # emptyDir on disk and PersistentVolumeClaims: a folder owned by fsGroup, as the kubelet makes it.
    folder = scratch / volume["name"]
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, fs_group, fs_group)
    return ["--mount", f"type=bind,source={folder},target={target}"]
