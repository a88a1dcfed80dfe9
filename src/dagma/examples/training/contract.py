"""The training pipeline's names and limits, in one place.

The assets, the check, the demo, the tests and docs/training.md read them here.
Importing this module imports nothing else.
"""

from __future__ import annotations

GROUP = "training"  # the asset group, and the code location's name
JOB = "training_pipeline"  # the whole pipeline for one partition, steps in one process
K8S_JOB = "training_pipeline_k8s"  # the same on Kubernetes, each step in its own pod

# The assets, in the order they run.
HISTORY = "visit_history"  # the visits before the day: what a model is trained on
NEW_VISITS = "new_visits"  # the visits of the day: what the champion scores
TRAINED_MODEL = "trained_model"  # trained, logged as an MLflow model, registered
CHAMPION = "champion_model"  # the registered version the alias points at
SCORED = "scored_visits"  # the day's visits scored with the champion
CHECK = "test_rmse_below_limit"  # the blocking check on trained_model that gates promotion

# Daily partitions over the synthetic visit dates; the last day sees the most history.
FIRST_DAY = "2025-01-01"
LAST_DAY = "2025-01-07"
VISITS_START = "2024-12-11"  # the first synthetic visit date
VISIT_DAYS = 28  # visits are spread over this many days, up to LAST_DAY

MODEL_NAME = "diabetes_progression"  # the registered model
ALIAS = "champion"
MAX_TEST_RMSE = 65.0  # the gate; predicting the mean scores about 75-83 on these splits
TRAINING_CODE_VERSION = "1"  # trained_model's code version, tagged on each model version

# dagma's tag on every MLflow run: the machine that recorded it; on Kubernetes the pod (a
# pod's host name is its name), so each step pod of training_pipeline_k8s is named.
HOST_TAG = "dagster.host"

# Tags on each registered model version, tying it to what produced it.
VERSION_TAGS = ("dagster.run_id", "dagster.asset_key", "dagster.partition_key",
                "dagster.code_version")  # fmt: skip

# Run config that trains a model the check refuses: two shallow, tiny boosting stages.
BAD_MODEL_CONFIG = {"n_estimators": 2, "learning_rate": 0.01, "max_depth": 1}


def run_config(model_config: dict[str, object] | None = None) -> dict[str, object]:
    """Run config for the pipeline with ``model_config`` as trained_model's config."""
    if not model_config:
        return {}
    return {"ops": {TRAINED_MODEL: {"config": dict(model_config)}}}
