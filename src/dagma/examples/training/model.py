"""The model: gradient-boosted trees on the diabetes features, and what training reports.

Plain scikit-learn and matplotlib; the Dagster asset (:mod:`.assets`) decides where the
numbers go. Boosting adds one tree per *stage*; ``staged_predict`` gives the error after
each, which is logged as a metric with the stage as its step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dagma.examples.training.data import Split


@dataclass(frozen=True)
class Hyperparameters:
    """What the launchpad sets (see ``TrainingConfig`` in :mod:`.assets`)."""

    n_estimators: int
    learning_rate: float
    max_depth: int
    subsample: float
    random_seed: int


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model and what it scored."""

    estimator: Any  # sklearn.ensemble.GradientBoostingRegressor
    # (stage, train RMSE, test RMSE) after each boosting stage, from 1
    stages: list[tuple[int, float, float]]
    metrics: dict[str, float]  # the final train_rmse, test_rmse, test_mae, test_r2
    feature_importances: dict[str, float]  # by feature, summing to 1
    fit_seconds: float  # the fit alone, for the pipeline's time budget


def rmse(truth: pd.Series, predicted: np.ndarray) -> float:
    """Root mean squared error, as a plain float."""
    return float(np.sqrt(np.mean((np.asarray(truth) - predicted) ** 2)))


def train(split: Split, hyperparameters: Hyperparameters) -> TrainedModel:
    """Fit on the train rows; score every stage and the final model on both sets."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error, r2_score

    started = time.perf_counter()
    estimator = GradientBoostingRegressor(
        n_estimators=hyperparameters.n_estimators,
        learning_rate=hyperparameters.learning_rate,
        max_depth=hyperparameters.max_depth,
        subsample=hyperparameters.subsample,
        random_state=hyperparameters.random_seed,
    ).fit(split.x_train, split.y_train)
    fit_seconds = time.perf_counter() - started
    stages = [
        (stage, rmse(split.y_train, on_train), rmse(split.y_test, on_test))
        for stage, (on_train, on_test) in enumerate(
            zip(
                estimator.staged_predict(split.x_train),
                estimator.staged_predict(split.x_test),
                strict=True,
            ),
            start=1,
        )
    ]
    predicted = estimator.predict(split.x_test)
    metrics = {
        "train_rmse": stages[-1][1],
        "test_rmse": stages[-1][2],
        "test_mae": float(mean_absolute_error(split.y_test, predicted)),
        "test_r2": float(r2_score(split.y_test, predicted)),
    }
    importances = dict(
        zip(split.x_train.columns, map(float, estimator.feature_importances_), strict=True)
    )
    return TrainedModel(estimator, stages, metrics, importances, fit_seconds)


def plot(trained: TrainedModel, path: Path, title: str) -> Path:
    """A PNG of the error by stage and of the feature importances, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display in a run pod
    from matplotlib import pyplot

    figure, (errors, importances) = pyplot.subplots(1, 2, figsize=(10, 4))
    steps = [stage for stage, _, _ in trained.stages]
    errors.plot(steps, [s[1] for s in trained.stages], label="train")
    errors.plot(steps, [s[2] for s in trained.stages], label="test")
    errors.set(xlabel="boosting stage", ylabel="RMSE", title="error by stage")
    errors.legend()
    ranked = sorted(trained.feature_importances.items(), key=lambda item: item[1])
    importances.barh([name for name, _ in ranked], [value for _, value in ranked])
    importances.set(xlabel="importance", title="feature importances")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return path
