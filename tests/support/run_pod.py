"""The run pod of `train_model_stub`, built by dagster-k8s's own code from dagma's values.

The chain: dagma values -> the Dagster chart's K8sRunLauncher config and the user
deployment's container context (what the chart hands `dagster api grpc`) -> the real code
location's job origin -> K8sRunLauncher's container context merge ->
`construct_dagster_k8s_job`, the function the launcher calls. Only where the launcher reads
its kube credentials is changed (a local kubeconfig instead of the in-cluster one); nothing
talks to a cluster.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import kubernetes
import yaml
from dagster._config import process_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._grpc.server import LoadedRepositories
from dagster._grpc.types import ExecuteRunArgs
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import construct_dagster_k8s_job, get_job_name_from_run_id

from support.dagster_chart import (
    image_name,
    k8s_run_launcher_config,
    user_code_container_context,
    user_deployment,
)
from support.release import USER_CODE
from support.umbrella import NAMESPACE, RELEASE, effective_values

ASSET_JOB = "__ASSET_JOB"  # the implicit job a materialization of train_model_stub runs


def offline_kubeconfig(directory: Path) -> Path:
    """A kubeconfig for 127.0.0.1:6443 that is only parsed, never connected to."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "offline", "user": {"token": "unused"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
        "current-context": "offline",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def build_run_job(values_files: list[Path], workdir: Path) -> dict:
    """The Job manifest the K8sRunLauncher would create to materialize train_model_stub."""
    values = effective_values(values_files=values_files)
    dagster = values["dagster"]

    # 1. The launcher, from the config the chart renders into the instance's dagster.yaml.
    launcher_config = k8s_run_launcher_config(dagster, RELEASE, NAMESPACE)
    processed = process_config(K8sRunLauncher.config_type(), launcher_config)
    assert processed.success, processed.errors
    launcher_values = dict(processed.value)
    kubeconfig = offline_kubeconfig(workdir)
    launcher_values.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    launcher = K8sRunLauncher.from_config_value(None, launcher_values)

    # 2. The code location as the chart starts it: the container context (as JSON in
    #    DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT) and DAGSTER_CURRENT_IMAGE.
    deployment = user_deployment(dagster, USER_CODE)
    context = user_code_container_context(
        dagster["dagster-user-deployments"], deployment, RELEASE, NAMESPACE
    )
    image = image_name(deployment["image"], chart_version="")
    loaded = LoadedRepositories(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="dagma.definitions"),
        container_image=image,
        entry_point=["dagster"],
        container_context=json.loads(json.dumps(context)),
    )
    [repository] = loaded.reconstructables_by_name.values()
    job_origin = repository.get_reconstructable_job(ASSET_JOB).get_python_origin()
    run = DagsterRun(job_name=ASSET_JOB, run_id=str(uuid.uuid4()), job_code_origin=job_origin)

    # 3. What K8sRunLauncher._launch_k8s_job_with_args does with them.
    container_context = launcher.get_container_context_for_run(run)
    job_config = container_context.get_k8s_job_config(
        job_image=job_origin.repository_origin.container_image, run_launcher=launcher
    )
    args = ExecuteRunArgs(
        job_origin=job_origin,
        run_id=run.run_id,
        instance_ref=InstanceRef.from_dir(str(workdir)),
        set_exit_code_on_failure=launcher.fail_pod_on_run_failure,
    ).get_command_args()
    job_name = get_job_name_from_run_id(run.run_id)
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=args,
        job_name=job_name,
        pod_name=job_name,
        component="run_worker",
        user_defined_k8s_config=container_context.run_k8s_config,
        labels={"dagster/job": ASSET_JOB, "dagster/run-id": run.run_id},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": ASSET_JOB}],
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    manifest["metadata"]["namespace"] = container_context.namespace
    return manifest
