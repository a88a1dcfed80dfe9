"""The README's examples work as printed.

"A complete code location": the Python block is written to the file its first
line names and materialized with the README's own commands (the tracking URI
pointed at this session's MLflow server); what was logged is read back from the
stub and from MLflow. "Your own code location" (docs/kubernetes.md): its values file
installs with charts/dagma and gives the deployment the MLflow ConfigMap and Secret.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import helm_python
import pytest
import yaml
from dagster import materialize
from mlflow import MlflowClient
from support.dagster_chart import user_deployment
from support.umbrella import VALUES_DIR, effective_values, render_umbrella

from dagma import MlflowStubResource

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### A complete code location"
DEPLOY_SECTION = "## Your own code location"
DEPLOY_DOC = "docs/kubernetes.md"
README_SERVER = "http://127.0.0.1:5000"


def _blocks(language: str, heading: str = SECTION, doc: str = "README.md") -> list[str]:
    """The ``language`` code blocks under ``heading`` in ``doc``, in order, dedented."""
    text = (ROOT / doc).read_text()
    after = text[text.index(heading) + len(heading) :]
    section = re.split(r"\n#{2,3} ", after, maxsplit=1)[0]  # up to the next heading
    fence = rf"^[ ]*```{language}\n(.*?)^[ ]*```"
    return [textwrap.dedent(b) for b in re.findall(fence, section, re.MULTILINE | re.DOTALL)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding the example, at the path its first line names."""
    [code] = _blocks("python")
    first_line = code.splitlines()[0]
    assert first_line.startswith("# ") and first_line.endswith(".py"), first_line
    module = tmp_path / first_line[2:]
    module.parent.mkdir(parents=True)
    (module.parent / "__init__.py").write_text("")
    module.write_text(code)
    return tmp_path


def _commands() -> list[str]:
    [block] = _blocks("bash")
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _run(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env={**clean, "DAGSTER_HOME": str(cwd), **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_readme_commands_are_the_stub_run_then_the_tracked_run() -> None:
    stub, tracked = _commands()
    assert "MLFLOW_USE_TRACKING" not in stub
    switch, uri = shlex.split(tracked)[:2]
    assert (switch, uri) == ("MLFLOW_USE_TRACKING=true", f"MLFLOW_TRACKING_URI={README_SERVER}")


def test_readme_example_logs_to_the_stub(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    [module_file] = project.glob("*/definitions.py")
    spec = importlib.util.spec_from_file_location("readme_example", module_file)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    stub = example.defs.resources["tracking"]
    assert isinstance(stub, MlflowStubResource)

    assert materialize([example.train], resources={"tracking": stub}).success
    [run] = stub.runs.values()
    assert (run.run_name, run.status) == ("train", "FINISHED")
    assert (run.params, run.metrics) == ({"n_estimators": "10"}, {"rmse": 0.123})

    result = _run(_commands()[0], project)  # the README's command, through Dagster's CLI
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLflow tracking is off" in result.stderr
    assert "RUN_SUCCESS" in result.stderr


def test_readme_example_records_the_run_in_mlflow(project: Path, mlflow_server: str) -> None:
    experiment = f"readme-{uuid.uuid4().hex[:8]}"
    command = _commands()[1].replace(README_SERVER, mlflow_server)
    result = _run(command, project, MLFLOW_EXPERIMENT=experiment)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(tracking_uri=mlflow_server)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, result.stderr[-3000:]
    [run] = client.search_runs([found.experiment_id])
    assert (run.info.run_name, run.info.status) == ("train", "FINISHED")
    assert run.data.params == {"n_estimators": "10"}
    assert run.data.metrics == {"rmse": 0.123}
    [artifact] = client.list_artifacts(run.info.run_id)
    assert artifact.path == "report.txt"
    downloaded = client.download_artifacts(run.info.run_id, "report.txt", str(project))
    assert Path(downloaded).read_text() == "rmse=0.123\n"


@pytest.fixture
def own_location_values(tmp_path: Path) -> Path:
    [values] = _blocks("yaml", DEPLOY_SECTION, DEPLOY_DOC)
    path = tmp_path / "my-code.yaml"
    path.write_text(values)
    return path


def test_readme_code_location_values_install_with_the_mlflow_env(
    own_location_values: Path,
) -> None:
    files = [VALUES_DIR / "local.yaml", own_location_values]
    render_umbrella(values_files=files)  # charts/dagma's own checks pass
    values = effective_values(values_files=files)
    deployment = user_deployment(values["dagster"], "my-code")
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "my_project.definitions"]
    assert deployment["envConfigMaps"] == [{"name": values["tracking"]["configMapName"]}]
    assert deployment["envSecrets"] == [{"name": values["tracking"]["secretName"]}]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_readme_code_location_without_the_secret_is_refused(
    own_location_values: Path, tmp_path: Path
) -> None:
    values = yaml.safe_load(own_location_values.read_text())
    del values["dagster"]["dagster-user-deployments"]["deployments"][0]["envSecrets"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(values))
    with pytest.raises(helm_python.HelmError, match="must name the MLflow credentials Secret"):
        render_umbrella(values_files=[VALUES_DIR / "local.yaml", broken])
