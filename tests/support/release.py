"""The dagma release that the deployment tests run in Docker: values, manifests and their data.

Values are the documented local install, ``values/kind.yaml``, plus an overlay that only
points the release at what a test machine has:

- free ports on 127.0.0.1 instead of the fixed ones (MLflow's server and Service port,
  the code location's gRPC port, the webserver's port), so concurrent sessions and a
  running ``make demo`` do not clash; the UI links follow them, as the port-forwards do;
- the session's PostgreSQL as Dagster's database, configured the way an external database
  is (``dagster.postgresql.enabled: false``, host, port, user, password, database);
- telemetry off, so nothing leaves the machine: Dagster's (``dagster.telemetry.enabled``)
  and MLflow's in the code location and its run pods (list-form ``env`` of the user
  deployment, which reaches run pods through ``includeConfigInLaunchedRuns``).

The manifests are charts/dagma and charts/mlflow rendered by Helm, plus the objects the
Dagster chart would render (:mod:`support.dagster_manifests`). Containers then run from
them with :func:`support.container.pod.pod_container`; every Service name of the release
resolves to 127.0.0.1 inside them, and ``0.0.0.0`` binds become ``127.0.0.1``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dagma.devserver import free_port
from support import dagster_manifests
from support.container.pod import PodContainer, pod_container
from support.container_spec import object_data
from support.dagster_chart import dagster_version_in_lock, user_deployment
from support.helm import Rendered, load_values_files
from support.postgres import PostgresServer
from support.umbrella import (
    NAMESPACE,
    RELEASE,
    effective_values,
    render_umbrella,
    values_paths,
)

BASE_VALUES = "kind.yaml"
USER_CODE = "dagma-user-code"  # the code location (user deployment) in charts/dagma's values
# The one liberty in every argv: servers bind the loopback, not every interface of the host.
BIND_LOCALLY = {"0.0.0.0": "127.0.0.1"}
NO_TELEMETRY = [
    {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
    {"name": "DO_NOT_TRACK", "value": "true"},
]


@dataclass(frozen=True)
class Ports:
    """Free ports on 127.0.0.1 for the release's servers."""

    mlflow: int
    code_location: int
    webserver: int

    @classmethod
    def free(cls) -> Ports:
        """Three distinct free ports."""
        chosen: list[int] = []
        while len(chosen) < 3:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)


def machine_overlay(ports: Ports, postgres: PostgresServer) -> dict[str, Any]:
    """The values the tests add to values/kind.yaml (see the module docstring)."""
    kind = load_values_files(values_paths([BASE_VALUES]))
    # Helm replaces lists whole: restate kind.yaml's user deployment with the test's port.
    deployments = copy.deepcopy(kind["dagster"]["dagster-user-deployments"]["deployments"])
    [code_location] = [d for d in deployments if d["name"] == USER_CODE]
    code_location["port"] = ports.code_location
    code_location["env"] = [*code_location.get("env", []), *NO_TELEMETRY]
    return {
        "tracking": {
            "uiUrl": f"http://127.0.0.1:{ports.mlflow}",
            "dagsterUiUrl": f"http://127.0.0.1:{ports.webserver}",
        },
        "mlflow": {"server": {"port": ports.mlflow}, "service": {"port": ports.mlflow}},
        "dagster": {
            "telemetry": {"enabled": False},
            "dagsterWebserver": {"service": {"port": ports.webserver}},
            "dagster-user-deployments": {"deployments": deployments},
            "postgresql": {
                "enabled": False,
                "postgresqlHost": postgres.host,
                "postgresqlUsername": postgres.user,
                "postgresqlPassword": postgres.password,
                "postgresqlDatabase": postgres.database,
                "service": {"port": postgres.port},
            },
        },
    }


@dataclass
class Release:
    """One rendering of the release, with the data its Secrets and ConfigMaps hold."""

    overlay: dict[str, Any]
    ports: Ports

    @cached_property
    def values_files(self) -> list[Path]:
        """The values files of the install (before the overlay)."""
        return values_paths([BASE_VALUES])

    @cached_property
    def rendered(self) -> Rendered:
        """charts/dagma with its MLflow subchart, rendered by Helm."""
        return render_umbrella(self.overlay, values_files=self.values_files)

    @cached_property
    def values(self) -> dict[str, Any]:
        """The effective values, the Dagster chart's defaults included."""
        return effective_values(self.overlay, values_files=self.values_files)

    @property
    def dagster(self) -> dict[str, Any]:
        """The effective values of the Dagster chart."""
        return self.values["dagster"]

    @property
    def code_location(self) -> dict[str, Any]:
        """The dagma user deployment's values."""
        return user_deployment(self.dagster, USER_CODE)

    @property
    def code_location_deployment(self) -> dict[str, Any]:
        """The Deployment of the dagma code location (its gRPC server), as the chart renders it."""
        [deployment] = [o for o in self.dagster_objects if o["kind"] == "Deployment"]
        return deployment

    @cached_property
    def dagster_objects(self) -> list[dict[str, Any]]:
        """What the Dagster chart renders that the tests run or read."""
        user_deployments = self.dagster["dagster-user-deployments"]
        objects = [
            dagster_manifests.instance_config_map(self.dagster, RELEASE, NAMESPACE),
            dagster_manifests.shared_env_config_map(user_deployments, RELEASE, NAMESPACE),
            dagster_manifests.user_env_config_map(user_deployments, self.code_location, RELEASE),
            dagster_manifests.user_deployment(
                user_deployments, self.code_location, RELEASE, NAMESPACE, dagster_version_in_lock()
            ),
        ]
        secret = dagster_manifests.postgresql_secret(self.dagster, RELEASE)
        if secret is not None:
            objects.append(secret)
        return objects

    def objects(self) -> list[dict[str, Any]]:
        """Every object of the release the tests know: rendered and mirrored."""
        return [*self.rendered.all(), *self.dagster_objects]

    def find(self, kind: str, name: str) -> dict[str, Any]:
        """The object of ``kind`` called ``name``."""
        found = [o for o in self.objects() if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    @cached_property
    def data(self) -> tuple[dict[str, dict[str, str]], ...]:
        """``(secrets, config_maps)``: the data of every Secret and ConfigMap, by name."""
        return object_data(self.objects())

    @property
    def instance_yaml(self) -> str:
        """The ``dagster.yaml`` the Dagster chart's instance ConfigMap holds."""
        [config_map] = [
            o for o in self.dagster_objects if o["metadata"]["name"].endswith("-instance")
        ]
        return config_map["data"]["dagster.yaml"]

    @property
    def instance_config(self) -> dict[str, Any]:
        """The same, parsed."""
        return yaml.safe_load(self.instance_yaml)

    @property
    def service_names(self) -> list[str]:
        """Names that resolve to a Service in the namespace (charts' Services, code locations)."""
        services = [doc["metadata"]["name"] for doc in self.rendered.of_kind("Service")]
        locations = [d["name"] for d in self.dagster["dagster-user-deployments"]["deployments"]]
        return [*services, *locations]

    def pod_container(
        self,
        doc: Mapping[str, Any],
        name: str,
        scratch: Path,
        claims: Mapping[str, Path] | None = None,
    ) -> PodContainer:
        """Container ``name`` of ``doc``'s pod, ready for ``docker run`` on the host network."""
        secrets, config_maps = self.data
        return pod_container(
            doc,
            name,
            scratch=scratch,
            claims=claims or {},
            secrets=secrets,
            config_maps=config_maps,
            hosts=self.service_names,
            replace=BIND_LOCALLY,
        )


def local_release(postgres: PostgresServer) -> Release:
    """The release on free ports with ``postgres`` as Dagster's database."""
    ports = Ports.free()
    return Release(machine_overlay(ports, postgres), ports)
