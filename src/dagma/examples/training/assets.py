"""The pipeline's assets, one daily partition at a time.

``visit_history`` and ``new_visits`` slice the bundled data for the day;
``trained_model`` trains on the history, records the run and the MLflow model, and
registers a version; the blocking check (:mod:`.checks`) judges that version;
``champion_model`` moves the alias to it; ``scored_visits`` scores the day's visits
with the champion. Every MLflow run goes through the tracking resource's
``tracking.run(context)``, whose run is MLflow's active run, so ``mlflow.log_input`` and
``mlflow.sklearn.log_model`` inside the block land in it.
"""

import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    DailyPartitionsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)
from pydantic import Field

from dagma.examples.training import contract, data, lineage, model
from dagma.examples.training.registry import ModelRegistry, TrainingNeedsMlflowError
from dagma.tracking.recorder import MlflowRunRecorder
from dagma.tracking.resource import MlflowTrackingResource

DAYS = DailyPartitionsDefinition(
    start_date=contract.FIRST_DAY,
    end_date=(date.fromisoformat(contract.LAST_DAY) + timedelta(days=1)).isoformat(),
)
MODEL_ARTIFACT = "model"  # the logged model's name in the run
PASSED_TAG = f"dagster.check.{contract.CHECK}"  # the check's verdict, on each version
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]  # a fitted tree's node arrays


class TrainingConfig(Config):
    """The hyperparameters, set in the launchpad (or with ``--config-json``)."""

    n_estimators: int = Field(default=100, ge=1, le=1000, description="boosting stages")
    learning_rate: float = Field(default=0.05, gt=0, le=1, description="shrinkage per stage")
    max_depth: int = Field(default=2, ge=1, le=10, description="depth of each tree")
    subsample: float = Field(default=1.0, gt=0, le=1, description="rows per tree, a fraction")
    test_fraction: float = Field(default=0.25, gt=0, lt=1, description="history held out")
    random_seed: int = Field(default=0, description="for the split and the trees")


def _frame_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    """Row count, column schema and date range: what Dagster's asset page shows of a slice."""
    columns = [TableColumn(name, str(dtype)) for name, dtype in frame.dtypes.items()]
    dates = frame[data.DATE_COLUMN]
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": TableSchema(columns=columns),
        "first_visit": str(dates.min().date()) if len(frame) else "",
        "last_visit": str(dates.max().date()) if len(frame) else "",
    }


def _slice(frame: pd.DataFrame) -> MaterializeResult:
    return MaterializeResult(
        metadata=_frame_metadata(frame), data_version=DataVersion(data.data_version(frame))
    )


@asset(name=contract.HISTORY, group_name=contract.GROUP, partitions_def=DAYS, kinds={"pandas"})
def visit_history(context: AssetExecutionContext) -> MaterializeResult:
    """The visits before the day: what that day's model is trained and tested on."""
    return _slice(data.history(context.partition_key))


@asset(name=contract.NEW_VISITS, group_name=contract.GROUP, partitions_def=DAYS, kinds={"pandas"})
def new_visits(context: AssetExecutionContext) -> MaterializeResult:
    """The visits on the day: what the champion model scores."""
    return _slice(data.new_visits(context.partition_key))


def _require_tracking(tracking: MlflowRunRecorder) -> None:
    """Refuse the stub before any work: the model has nowhere to go."""
    if not isinstance(tracking, MlflowTrackingResource):
        from dagma.examples.training.registry import STUB_REFUSAL

        raise TrainingNeedsMlflowError(STUB_REFUSAL)


def _pip_requirements() -> list[str]:
    """The sklearn flavour's own requirements: MLflow would otherwise infer them by loading
    the model in a subprocess, seconds per training."""
    import mlflow.sklearn

    return mlflow.sklearn.get_default_pip_requirements()


@asset(
    name=contract.TRAINED_MODEL,
    group_name=contract.GROUP,
    partitions_def=DAYS,
    deps=[visit_history],
    code_version=contract.TRAINING_CODE_VERSION,
    kinds={"scikit-learn", "mlflow"},
)
def trained_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    tracking: MlflowRunRecorder,
    registry: ModelRegistry,
) -> MaterializeResult:
    """Gradient-boosted trees trained on the day's history, logged and registered in MLflow."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    _require_tracking(tracking)
    day = context.partition_key
    frame = data.history(day)
    recorded = lineage.latest(context.instance, contract.HISTORY, day)
    lineage.same_rows(recorded, frame)
    split = data.split(frame, config.test_fraction, config.random_seed)
    hyperparameters = model.Hyperparameters(
        config.n_estimators, config.learning_rate, config.max_depth, config.subsample,
        config.random_seed,
    )  # fmt: skip
    with tracking.run(context) as run_id:
        tracking.log_params(
            {**config.model_dump(), "train_rows": len(split.x_train),
             "test_rows": len(split.x_test), "features": ",".join(split.x_train.columns)}
        )  # fmt: skip
        lineage.log_dataset(recorded, frame, context="training")
        trained = model.train(split, hyperparameters)
        for stage, train_rmse, test_rmse in trained.stages:
            tracking.log_metrics({"train_rmse": train_rmse, "test_rmse": test_rmse}, step=stage)
        last_stage = trained.stages[-1][0]
        tracking.log_metrics(
            {"test_mae": trained.metrics["test_mae"], "test_r2": trained.metrics["test_r2"],
             "fit_seconds": trained.fit_seconds},
            step=last_stage,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="dagma-") as tmp:
            importances = Path(tmp) / "feature_importances.json"
            importances.write_text(json.dumps(trained.feature_importances, indent=2) + "\n")
            tracking.log_artifact(importances)
            plot = model.plot(trained, Path(tmp) / "training.png", f"{contract.MODEL_NAME}, {day}")
            tracking.log_artifact(plot, "plots")
        predicted = trained.estimator.predict(split.x_train)
        logged = mlflow.sklearn.log_model(
            trained.estimator,
            name=MODEL_ARTIFACT,
            signature=infer_signature(split.x_train, predicted),
            input_example=split.x_train.head(3),
            pip_requirements=_pip_requirements(),
            # skops (the default format) loads only the types it is told to trust.
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
        version = registry.register(
            logged.model_uri, logged.model_id, run_id, _version_tags(context, day)
        )
    context.log.info(
        f"registered {registry.model_name} version {version.version} "
        f"(test RMSE {trained.metrics['test_rmse']:.2f}) from MLflow run {run_id}"
    )
    return MaterializeResult(
        metadata={
            **{key: MetadataValue.float(value) for key, value in trained.metrics.items()},
            "model_version": MetadataValue.int(int(version.version)),
            "registered_model": registry.model_name,
            "model_uri": registry.version_uri(version.version),
            "mlflow_model_id": logged.model_id,
            "training_rows": len(split.x_train),
            "fit_seconds": MetadataValue.float(trained.fit_seconds),
        }
    )


def _version_tags(context: AssetExecutionContext, day: str) -> dict[str, str]:
    """What a registered version is tagged with: the Dagster run, asset, partition, code."""
    code_version = context.assets_def.code_versions_by_key.get(context.asset_key)
    return {
        "dagster.run_id": context.run.run_id,
        "dagster.asset_key": context.asset_key.to_user_string(),
        "dagster.partition_key": day,
        "dagster.code_version": code_version or "",
    }


def _checked_version(context: AssetExecutionContext, registry: ModelRegistry) -> str:
    """The version trained for the day, refused unless the check passed it."""
    trained = lineage.latest(context.instance, contract.TRAINED_MODEL, context.partition_key)
    version = str(trained.metadata["model_version"])
    verdict = registry.get_version(version).tags.get(PASSED_TAG)
    if verdict != "passed":
        raise Failure(
            f"{registry.model_name} version {version} ({contract.TRAINED_MODEL}"
            f"[{context.partition_key}]) has not passed {contract.CHECK} (its tag {PASSED_TAG} "
            f"is {verdict!r}): the alias {registry.alias} stays where it is. Run the check "
            "(materialize the whole job) or train a better model."
        )
    return version


@asset(
    name=contract.CHAMPION,
    group_name=contract.GROUP,
    partitions_def=DAYS,
    deps=[trained_model],
    kinds={"mlflow"},
)
def champion_model(context: AssetExecutionContext, registry: ModelRegistry) -> MaterializeResult:
    """The alias moved to the day's version, which only a passing check lets through."""
    version = _checked_version(context, registry)
    previous = registry.promote(version)
    moved = "set" if previous is None else f"moved from version {previous}"
    context.log.info(f"{registry.alias} of {registry.model_name}: version {version} ({moved})")
    return MaterializeResult(
        metadata={
            "model_version": MetadataValue.int(int(version)),
            "previous_version": MetadataValue.int(int(previous)) if previous else "none",
            "model_uri": registry.alias_uri,
        }
    )


def _logged_model_id(source: str) -> str | None:
    """``m-…`` of a version registered from ``models:/m-…`` (MLflow 3's logged model; the
    registry's REST answers carry no model id of their own)."""
    model_id = source.removeprefix("models:/")
    return model_id if source.startswith("models:/") and "/" not in model_id else None


@asset(
    name=contract.SCORED,
    group_name=contract.GROUP,
    partitions_def=DAYS,
    deps=[champion_model, new_visits],
    kinds={"scikit-learn", "mlflow"},
)
def scored_visits(
    context: AssetExecutionContext, tracking: MlflowRunRecorder, registry: ModelRegistry
) -> MaterializeResult:
    """The day's visits scored with the champion, in a run naming the version it used."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelInput

    _require_tracking(tracking)
    day = context.partition_key
    frame = data.new_visits(day)
    recorded = lineage.latest(context.instance, contract.NEW_VISITS, day)
    lineage.same_rows(recorded, frame)
    version = registry.champion_version()
    if version is None:
        raise Failure(
            f"{registry.alias_uri} does not exist yet: no version has passed {contract.CHECK}. "
            f"Materialize the job for a day whose model passes (e.g. {contract.LAST_DAY})."
        )
    model_id = _logged_model_id(registry.get_version(version).source)
    with tracking.run(context) as run_id:  # sets the tracking URI models:/ resolves against
        # What serving code loads: the alias. The loaded model must be the version's, or the
        # alias moved in between and the tags below would name the wrong version.
        scorer = mlflow.pyfunc.load_model(registry.alias_uri)
        loaded = scorer.metadata.model_id
        if model_id is not None and loaded != model_id:
            raise Failure(
                f"{registry.alias_uri} moved while {contract.SCORED}[{day}] loaded it (version "
                f"{version} is model {model_id}; it loaded {loaded}): materialize "
                f"{contract.SCORED} for {day} again."
            )
        tracking.set_tag("model_name", registry.model_name)
        tracking.set_tag("model_version", version)
        tracking.set_tag("model_uri", registry.alias_uri)
        lineage.log_dataset(recorded, frame, context="scoring")
        if model_id is not None:  # MLflow 3's link from the run to the logged model it used
            mlflow.log_input(model=LoggedModelInput(model_id))
        predicted = pd.Series(scorer.predict(frame[data.feature_columns()]), name="predicted")
        metrics = {
            "batch_rmse": model.rmse(frame[data.TARGET], predicted.to_numpy()),
            "batch_mae": float((frame[data.TARGET] - predicted).abs().mean()),
            "mean_prediction": float(predicted.mean()),
            "rows": float(len(frame)),
        }
        tracking.log_metrics(metrics)
        with tempfile.TemporaryDirectory(prefix="dagma-") as tmp:
            scores = Path(tmp) / "predictions.csv"
            pd.concat([frame, predicted], axis=1).to_csv(scores, index=False)
            tracking.log_artifact(scores)
    context.log.info(f"scored {len(frame)} visits of {day} with version {version}, run {run_id}")
    return MaterializeResult(
        metadata={
            **{key: MetadataValue.float(value) for key, value in metrics.items()},
            "model_version": MetadataValue.int(int(version)),
            "model_uri": registry.version_uri(version),
        }
    )
