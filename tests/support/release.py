"""Names of the dagma release that the tests share with its values files.

``USER_CODE`` is the code location (the Dagster chart's user deployment) charts/dagma's
values define, ``TRAINING_CODE`` the training example's, which values/local.yaml adds;
``NO_TELEMETRY`` the list-form ``env`` the tests add to it, which turns
MLflow's telemetry off in the code location and, through ``includeConfigInLaunchedRuns``,
in its run pods (Dagster's own is ``dagster.telemetry.enabled``).
"""

from __future__ import annotations

USER_CODE = "dagma-user-code"
TRAINING_CODE = "dagma-training"
# dagma.examples.steps, which the training cluster test adds on dagma-user-code's image.
STEPS_CODE = "dagma-steps"
# The repository of a code location built from Definitions. Each location has its own
# implicit __ASSET_JOB, so a launch of it names the location and this repository.
REPOSITORY = "__repository__"
NO_TELEMETRY = [
    {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
    {"name": "DO_NOT_TRACK", "value": "true"},
]
