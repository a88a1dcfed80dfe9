"""``ModelRegistry``: the registered model the pipeline writes, through the official client.

It reaches MLflow where the tracking resource does (its ``tracking_uri``; the registry
lives on the same server), as a nested resource, so the tracking resource's bounded
client retries apply to its requests too. With tracking off (the in-memory stub) there is
no registry to write to: every method raises :class:`TrainingNeedsMlflowError`, saying
what to set.
"""

from typing import TYPE_CHECKING

from dagster import ConfigurableResource, Failure, ResourceDependency

from dagma.examples.training import contract
from dagma.tracking.recorder import MlflowRunRecorder
from dagma.tracking.resource import MlflowTrackingResource

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class TrainingNeedsMlflowError(Failure):
    """The pipeline was run with the in-memory stub, which has no model registry."""


STUB_REFUSAL = (
    "The training pipeline logs, registers and loads back an MLflow model, which needs "
    "MLflow itself; tracking is off here (MLFLOW_USE_TRACKING is unset or false, so the "
    "code location uses the in-memory MlflowStubResource). Set MLFLOW_USE_TRACKING=true and "
    "MLFLOW_TRACKING_URI to a Tracking server (http://127.0.0.1:5000 is the one `make demo` "
    "and `make demo-training` start) or to a local store (sqlite:///path/to/mlflow.db), and "
    "reload the code location."
)


class ModelRegistry(ConfigurableResource):
    """Registers versions of one model, moves its alias, and says where the alias points."""

    tracking: ResourceDependency[MlflowRunRecorder]
    model_name: str = contract.MODEL_NAME
    alias: str = contract.ALIAS

    @property
    def tracking_uri(self) -> str:
        """Where the registry is: the tracking resource's MLflow. Refused for the stub."""
        if not isinstance(self.tracking, MlflowTrackingResource):
            raise TrainingNeedsMlflowError(STUB_REFUSAL)
        return self.tracking.tracking_uri

    @property
    def alias_uri(self) -> str:
        """``models:/<name>@<alias>``: what serving code loads."""
        return f"models:/{self.model_name}@{self.alias}"

    def version_uri(self, version: str | int) -> str:
        """``models:/<name>/<version>``: one version, whatever the alias does meanwhile."""
        return f"models:/{self.model_name}/{version}"

    def client(self) -> "MlflowClient":
        """The official client for this registry."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def register(
        self, model_uri: str, model_id: str | None, run_id: str, tags: dict[str, str]
    ) -> "ModelVersion":
        """A new version of the model from ``model_uri`` (the model is created on first use)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        client = self.client()
        try:
            client.create_registered_model(
                self.model_name,
                description="Diabetes progression one year after a visit (dagma's training "
                "example). The alias champion is moved only by a passing Dagster check.",
            )
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        return client.create_model_version(
            self.model_name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id
        )

    def get_version(self, version: str | int) -> "ModelVersion":
        """One version, with its tags and the run that logged it."""
        return self.client().get_model_version(self.model_name, str(version))

    def set_version_tag(self, version: str | int, key: str, value: str) -> None:
        """Tag one version (the check records its verdict on the version it judged)."""
        self.client().set_model_version_tag(self.model_name, str(version), key, value)

    def champion_version(self) -> str | None:
        """The version the alias points at; None while there is none (or no model yet)."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        try:
            model = self.client().get_registered_model(self.model_name)
        except MlflowException as error:
            if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        return model.aliases.get(self.alias)

    def promote(self, version: str | int) -> str | None:
        """Point the alias at ``version``; return the version it pointed at before."""
        previous = self.champion_version()
        self.client().set_registered_model_alias(self.model_name, self.alias, str(version))
        return previous
