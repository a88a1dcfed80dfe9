"""Run a container of a rendered Kubernetes manifest as a local process, as the kubelet would.

Tests take ``command``, ``args``, ``env``, ``envFrom``, ``workingDir`` and ``volumeMounts``
from the manifest Helm rendered, never retyping them, and :func:`localize` turns them into
an argv, an environment and a working directory for a local process:

- ``env``/``envFrom`` resolve like the kubelet's: ``envFrom`` first, then ``env`` in order
  with ``$(VAR)`` expansion; ``secretKeyRef``/``configMapKeyRef`` read the data you pass
  (see :func:`object_data` to take it from rendered Secrets and ConfigMaps).
- ``$(VAR)`` in ``command``/``args`` expands from that environment (``$$`` escapes).
- Every volume mount becomes a local directory: the ones you pass stand in for persistent
  volumes, ``emptyDir`` volumes get directories under ``scratch`` (shared by the containers
  of one pod, as in Kubernetes), ``configMap``/``secret`` volumes are written from the data.
  Mount paths in argv, env values and ``workingDir`` are rewritten to those directories,
  those of every container of the pod (one container may write a path into a file that
  another, which mounts it, reads).

Nothing else changes unless the caller says so with ``replace`` (for example binding
``0.0.0.0`` to ``127.0.0.1``), so a test states every liberty it takes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

Data = Mapping[str, Mapping[str, str]]
# The default of the optional mapping arguments: empty and immutable.
EMPTY: Mapping[str, Any] = MappingProxyType({})
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# Host variables a local process needs and a container image would provide.
_HOST_VARIABLES = ("LANG", "LC_ALL", "PYTHONPATH", "TZ")


@dataclass(frozen=True)
class LocalContainer:
    """A container resolved to a local process: what to run, with what, where."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: dict[str, Path]

    def popen(self, log: TextIO) -> subprocess.Popen[str]:
        """Start the process, stdout and stderr going to ``log``.

        It stays in the caller's process group, so interrupting the test run stops it too.
        """
        return subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, text=True
        )

    def run(self, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run to completion, capturing output; the caller checks the return code."""
        return subprocess.run(
            self.argv, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=timeout
        )


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (Linux; just ``pid`` elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command: state, ppid, ...
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children.get(current, [])
    return tree


def stop(process: subprocess.Popen[str], grace: float = 20.0) -> None:
    """SIGTERM the process (like a pod's termination); SIGKILL its whole tree after ``grace``."""
    if process.poll() is not None:
        return
    tree = process_tree(process.pid)
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in tree[1:]:  # workers a clean shutdown should have ended already
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod, or of the pod template of a Deployment, Job, StatefulSet..."""
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Init containers then containers, in the order the kubelet runs them."""
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The (init) container called ``name``."""
    found = [c for c in containers(doc) if c["name"] == name]
    assert found, f"no container {name!r} in {doc['kind']}/{doc['metadata']['name']}"
    return found[0]


def object_data(docs: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[str, str]], ...]:
    """``(secrets, config_maps)`` by name, from rendered Secret and ConfigMap documents."""
    secrets: dict[str, dict[str, str]] = {}
    config_maps: dict[str, dict[str, str]] = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Secret":
            decoded = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
            secrets[name] = {**decoded, **(doc.get("stringData") or {})}
        elif doc["kind"] == "ConfigMap":
            config_maps[name] = dict(doc.get("data") or {})
    return secrets, config_maps


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names expand, others stay, ``$$`` is ``$``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(substitute, text)


def default_host_env() -> dict[str, str]:
    """What the image would provide: this interpreter's bin directory first on PATH."""
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.update({k: os.environ[k] for k in _HOST_VARIABLES if k in os.environ})
    return env


def _lookup(data: Data, kind: str, ref: Mapping[str, Any]) -> str | None:
    values = data.get(ref["name"])
    if values is not None and ref["key"] in values:
        return values[ref["key"]]
    if ref.get("optional"):
        return None
    raise KeyError(f"{kind} {ref['name']!r} has no key {ref['key']!r}: pass it to localize()")


def resolve_env(
    spec: Mapping[str, Any], *, secrets: Data = EMPTY, config_maps: Data = EMPTY
) -> dict[str, str]:
    """The container's own environment (``envFrom`` then ``env``), as the kubelet builds it."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            kind, data = "secretRef", secrets
        else:
            kind, data = "configMapRef", config_maps
        ref = source[kind]
        if ref["name"] not in data and not ref.get("optional"):
            raise KeyError(f"envFrom {kind} {ref['name']!r} missing: pass it to localize()")
        env.update({prefix + k: v for k, v in data.get(ref["name"], {}).items()})
    for item in spec.get("env", []):
        if "valueFrom" not in item:
            env[item["name"]] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            value = _lookup(secrets, "Secret", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _lookup(config_maps, "ConfigMap", source["configMapKeyRef"])
        else:
            raise NotImplementedError(f"env {item['name']}: valueFrom {sorted(source)}")
        if value is not None:
            env[item["name"]] = value
    return env


def _materialize(volume: Mapping[str, Any], target: Path, secrets: Data, config_maps: Data) -> None:
    kind, data, ref = (
        ("secret", secrets, volume["secret"].get("secretName"))
        if "secret" in volume
        else ("configMap", config_maps, volume["configMap"]["name"])
    )
    if ref not in data:
        raise KeyError(f"{kind} volume {volume['name']!r} needs {kind} {ref!r}: pass its data")
    items = volume[kind].get("items") or [{"key": k, "path": k} for k in data[ref]]
    for item in items:
        path = target / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[ref][item["key"]])


def _mount_dirs(
    spec: Mapping[str, Any],
    pod: Mapping[str, Any],
    volumes: Mapping[str, Path],
    scratch: Path,
    secrets: Data,
    config_maps: Data,
) -> dict[str, Path]:
    by_name = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in spec.get("volumeMounts", []):
        name = mount["name"]
        volume = by_name[name]
        if name in volumes:
            base = Path(volumes[name])
        elif "emptyDir" in volume:
            base = scratch / "emptyDir" / name
        elif "configMap" in volume or "secret" in volume:
            base = scratch / "materialized" / name
            if not base.exists():
                _materialize(volume, base, secrets, config_maps)
        else:
            raise KeyError(f"volume {name!r} ({sorted(volume)}) needs a local directory: volumes=")
        base.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = base / mount.get("subPath", "")
    return mounts


def _rewrite_paths(text: str, mounts: Mapping[str, Path]) -> str:
    # One pass, longest mount path first, so a rewritten path is never rewritten again;
    # only whole path components match ("/data" is not rewritten inside "/database").
    if not mounts:
        return text
    by_path = {m.rstrip("/") or "/": local for m, local in mounts.items()}
    alternatives = "|".join(re.escape(m) for m in sorted(by_path, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w.-])(" + alternatives + r")(?=/|$|[^\w.-])")
    return pattern.sub(lambda match: str(by_path[match.group(1)]), text)


def localize(
    spec: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    scratch: Path,
    volumes: Mapping[str, Path] = EMPTY,
    secrets: Data = EMPTY,
    config_maps: Data = EMPTY,
    workdir: Path | None = None,
    entrypoint: Sequence[str] = (),
    image_env: Mapping[str, str] = EMPTY,
    host_env: Mapping[str, str] | None = None,
    replace: Mapping[str, str] = EMPTY,
) -> LocalContainer:
    """Resolve container ``spec`` of pod spec ``pod`` into a :class:`LocalContainer`.

    ``volumes`` maps volume names to the directories standing in for them (persistent
    volumes must be given); ``workdir`` stands in for the image's WORKDIR when the
    container sets no ``workingDir``; ``entrypoint`` for the image's ENTRYPOINT when it
    sets no ``command``; ``replace`` lists any other literal substitutions in argv.
    """
    mounts = _mount_dirs(spec, pod, volumes, scratch, secrets, config_maps)
    # Rewrite the mount paths of the whole pod: a container may write a path it does not
    # mount into a file that another container of the pod reads (a config file, say).
    pod_mounts: dict[str, Path] = {}
    for other in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        pod_mounts.update(_mount_dirs(other, pod, volumes, scratch, secrets, config_maps))
    pod_mounts.update(mounts)
    own_env = resolve_env(spec, secrets=secrets, config_maps=config_maps)
    argv = [*(spec.get("command") or entrypoint), *spec.get("args", [])]
    # Expand first, then rewrite mount paths once: a rewritten path must not be rewritten again.
    argv = [_rewrite_paths(expand(str(arg), own_env), pod_mounts) for arg in argv]
    own_env = {k: _rewrite_paths(v, pod_mounts) for k, v in own_env.items()}
    env = {**(default_host_env() if host_env is None else host_env), **image_env, **own_env}
    for old, new in replace.items():
        argv = [arg.replace(old, new) for arg in argv]
    if not argv:
        raise ValueError(f"container {spec['name']!r} sets no command: pass entrypoint=")
    executable = shutil.which(argv[0], path=env.get("PATH"))
    if executable is None:
        raise FileNotFoundError(f"{argv[0]!r} (container {spec['name']!r}) not on {env['PATH']}")
    argv[0] = executable
    if "workingDir" in spec:
        cwd = Path(_rewrite_paths(spec["workingDir"], pod_mounts))
    else:
        cwd = workdir or scratch / "workdir" / spec["name"]
    cwd.mkdir(parents=True, exist_ok=True)
    return LocalContainer(name=spec["name"], argv=argv, env=env, cwd=cwd, mounts=mounts)
