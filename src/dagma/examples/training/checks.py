"""The gate: a blocking check on the test RMSE of the version ``trained_model`` registered.

The check reads the version from the day's materialization and the RMSE from that
version's MLflow run (what the registry holds, not what the step said), and tags the
version with its verdict. Blocking: when it fails, ``champion_model`` and
``scored_visits`` do not run, so the alias stays where it was, and the Dagster UI shows
the failed check with the version in its metadata. ``champion_model`` also refuses a
version not tagged ``passed``, so materializing it alone cannot skip the gate.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from dagma.examples.training import contract, lineage
from dagma.examples.training.assets import PASSED_TAG, trained_model
from dagma.examples.training.registry import ModelRegistry


@asset_check(
    asset=trained_model,
    name=contract.CHECK,
    blocking=True,
    description=f"Test RMSE of the registered version at most {contract.MAX_TEST_RMSE}; "
    "only a passing version may become the champion.",
)
def test_rmse_below_limit(
    context: AssetCheckExecutionContext, registry: ModelRegistry
) -> AssetCheckResult:
    """Pass when the version's test RMSE is at most :data:`~.contract.MAX_TEST_RMSE`."""
    # In the job's run, the run's day; run alone from the UI, the latest materialization.
    day = context.partition_key if context.has_partition_key else None
    trained = lineage.latest(context.instance, contract.TRAINED_MODEL, day)
    version = str(trained.metadata["model_version"])
    model_version = registry.get_version(version)
    run = registry.client().get_run(model_version.run_id)
    test_rmse = run.data.metrics["test_rmse"]
    passed = test_rmse <= contract.MAX_TEST_RMSE
    registry.set_version_tag(version, PASSED_TAG, "passed" if passed else "failed")
    champion = registry.champion_version()
    verdict = "passed" if passed else "failed"
    context.log.info(
        f"{registry.model_name} version {version}: test RMSE {test_rmse:.2f} vs limit "
        f"{contract.MAX_TEST_RMSE}: {verdict}; {registry.alias} is version {champion}"
    )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"version {version}: test RMSE {test_rmse:.2f} "
            f"{'<=' if passed else '>'} {contract.MAX_TEST_RMSE}"
            + ("" if passed else f"; {registry.alias} stays on version {champion}")
        ),
        metadata={
            "model_version": MetadataValue.int(int(version)),
            "test_rmse": MetadataValue.float(test_rmse),
            "max_test_rmse": MetadataValue.float(contract.MAX_TEST_RMSE),
            "champion_before": MetadataValue.int(int(champion)) if champion else "none",
            "mlflow_run_id": model_version.run_id,
        },
    )
