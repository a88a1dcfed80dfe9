"""Run a container of a rendered pod in Docker, the way the kubelet would run it.

Everything comes from the manifest: ``command``/``args`` (``$(VAR)`` expanded from the
container's environment), ``env``/``envFrom`` (resolved by :mod:`support.container_spec`
from the Secret and ConfigMap data you pass), ``workingDir``, the volume mounts and the
security context. They become ``docker run`` options:

- ``command`` replaces the image's ENTRYPOINT, ``args`` its CMD (Kubernetes' rule);
- ``persistentVolumeClaim`` volumes are the host directories you pass per claim name,
  made group-writable for the pod's ``fsGroup`` as the kubelet does; ``emptyDir``
  volumes are fresh world-writable directories shared by the pod's containers;
  ``configMap``/``secret`` volumes are files written from the data; ``subPath`` and
  ``readOnly`` are honoured;
- ``runAsUser``/``runAsGroup`` → ``--user``, ``fsGroup`` → ``--group-add``,
  ``readOnlyRootFilesystem`` → ``--read-only``, dropped capabilities → ``--cap-drop``,
  ``allowPrivilegeEscalation: false`` → ``no-new-privileges``; ``runAsNonRoot`` with
  UID 0 is refused, as the kubelet refuses it;
- Service names resolve to 127.0.0.1 through ``--add-host`` (``hosts``), standing in for
  the cluster's DNS: every container runs on the host network.

The only other liberty is what the caller lists in ``replace`` (literal substitutions
in the argv, e.g. binding ``0.0.0.0`` → ``127.0.0.1``), so a test states each one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import container_spec
from support.container.cli import Docker
from support.container.run import Container, run_container, start_container
from support.container_spec import EMPTY, Data

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PodContainer:
    """One container of a rendered pod, resolved into what ``docker run`` needs."""

    name: str
    image: str
    entrypoint: str | None
    command: list[str]
    env: dict[str, str]
    volumes: dict[Path, str]
    user: str | None
    options: list[str] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        """The process the container runs: entrypoint (if the manifest sets one) and arguments."""
        return [*([self.entrypoint] if self.entrypoint else []), *self.command]

    def run(self, docker: Docker, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run to completion in a fresh container (removed afterwards)."""
        return run_container(
            docker, self.image, self.command, env=self.env, volumes=self.volumes,
            user=self.user, entrypoint=self.entrypoint, timeout=timeout, options=self.options,
        )  # fmt: skip

    def start(self, docker: Docker) -> Container:
        """Start in the background; the container stays until ``stop()``."""
        return start_container(
            docker, self.image, self.command, env=self.env, volumes=self.volumes,
            user=self.user, entrypoint=self.entrypoint, options=self.options,
        )  # fmt: skip


def _group_writable(path: Path, gid: int | None) -> None:
    """What the kubelet does to a volume for ``fsGroup``: group-owned, group-writable, setgid."""
    if gid is not None and os.geteuid() == 0:
        os.chown(path, -1, gid)
        path.chmod(0o2775)
    else:  # no fsGroup, or not root: the test's UID could not chown it, so open it up
        path.chmod(0o777)


def _volume_dirs(
    pod: Mapping[str, Any],
    claims: Mapping[str, Path],
    scratch: Path,
    secrets: Data,
    config_maps: Data,
) -> dict[str, Path]:
    """Every volume of the pod → the host directory standing in for it."""
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    dirs: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                raise KeyError(f"volume {name!r} claims {claim!r}: pass its directory in claims=")
            path = Path(claims[claim])
            path.mkdir(parents=True, exist_ok=True)
            _group_writable(path, fs_group)
        elif "emptyDir" in volume:
            path = scratch / "emptyDir" / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # the kubelet creates emptyDir volumes world-writable
        elif "configMap" in volume or "secret" in volume:
            path = scratch / "materialized" / name
            if not path.exists():  # the same writer the local-process runs use
                container_spec._materialize(volume, path, secrets, config_maps)
            path.chmod(0o755)
        else:
            raise NotImplementedError(f"volume {name!r}: {sorted(volume)}")
        dirs[name] = path
    return dirs


def _security_options(pod_context: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    options = []
    if pod_context.get("fsGroup") is not None:
        options += ["--group-add", str(pod_context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for capability in (context.get("capabilities") or {}).get("drop", []):
        options += ["--cap-drop", capability]
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    if context.get("privileged"):
        raise NotImplementedError("privileged containers are not run by the tests")
    return options


def _user(pod_context: Mapping[str, Any], context: Mapping[str, Any], name: str) -> str | None:
    """``--user`` from runAsUser/runAsGroup (the container's override the pod's)."""
    merged = {**pod_context, **context}
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if merged.get("runAsNonRoot") and uid == 0:
        raise ValueError(f"container {name!r}: runAsNonRoot with runAsUser 0 would not start")
    if uid is None:
        return None  # the image's USER, as in Kubernetes
    return f"{uid}:{gid}" if gid is not None else str(uid)


def pod_container(
    doc: Mapping[str, Any],
    name: str,
    *,
    scratch: Path,
    claims: Mapping[str, Path] = EMPTY,
    secrets: Data = EMPTY,
    config_maps: Data = EMPTY,
    hosts: Sequence[str] = (),
    replace: Mapping[str, str] = EMPTY,
) -> PodContainer:
    """Container ``name`` of the pod of ``doc`` (a Pod, Deployment, Job...), for ``docker run``.

    ``scratch`` holds the pod's emptyDir and materialized volumes (shared by its
    containers); ``claims`` maps PersistentVolumeClaim names to host directories;
    ``hosts`` are names (Services) that resolve to 127.0.0.1 inside the container.
    """
    pod = container_spec.pod_spec(doc)
    spec = container_spec.container(doc, name)
    env = container_spec.resolve_env(spec, secrets=secrets, config_maps=config_maps)
    command = [container_spec.expand(str(a), env) for a in spec.get("command") or []]
    args = [container_spec.expand(str(a), env) for a in spec.get("args") or []]
    for old, new in replace.items():
        command = [part.replace(old, new) for part in command]
        args = [part.replace(old, new) for part in args]
    dirs = _volume_dirs(pod, claims, scratch, secrets, config_maps)
    volumes: dict[Path, str] = {}
    for mount in spec.get("volumeMounts", []):
        source = dirs[mount["name"]] / mount.get("subPath", "")
        volumes[source] = mount["mountPath"] + (":ro" if mount.get("readOnly") else "")
    pod_context = pod.get("securityContext") or {}
    context = spec.get("securityContext") or {}
    options = _security_options(pod_context, context)
    if "workingDir" in spec:
        options += ["--workdir", spec["workingDir"]]
    for host in hosts:
        options += ["--add-host", f"{host}:{LOOPBACK}"]
    return PodContainer(
        name=name,
        image=spec["image"],
        entrypoint=command[0] if command else None,
        command=[*command[1:], *args],
        env=env,
        volumes=volumes,
        user=_user(pod_context, context, name),
        options=options,
    )
