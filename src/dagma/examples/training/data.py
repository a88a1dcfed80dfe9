"""The data: scikit-learn's bundled diabetes table, given synthetic visit dates.

The table ships inside scikit-learn (no download at run time). Each of its 442 patients
gets a visit date, drawn once with a fixed seed over :data:`~.contract.VISIT_DAYS` days
ending on the last partition, so each daily partition has its own slices:

- the *history* of day D: the visits before D, what a model for D is trained and tested on;
- the *new visits* of day D: the visits on D, which the champion model scores.

Both are recomputed from the package wherever a step runs (a pod has no disk shared with
the others); the data version (a digest of the rows) tells whether two steps saw the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from dagma.examples.training import contract

TARGET = "progression"  # a quantitative measure of disease progression one year later
DATE_COLUMN = "visit_date"
SEED = 20


@cache
def visits() -> pd.DataFrame:
    """Every visit: the ten features in their original units, the target, and a date."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": TARGET})
    days = np.random.default_rng(SEED).integers(0, contract.VISIT_DAYS, len(frame))
    frame[DATE_COLUMN] = pd.Timestamp(contract.VISITS_START) + pd.to_timedelta(days, unit="D")
    return frame


def feature_columns() -> list[str]:
    """The model's inputs: every column but the target and the date."""
    return [c for c in visits().columns if c not in (TARGET, DATE_COLUMN)]


def history(day: str) -> pd.DataFrame:
    """The visits before ``day`` (YYYY-MM-DD)."""
    frame = visits()
    return frame[frame[DATE_COLUMN] < pd.Timestamp(day)].reset_index(drop=True)


def new_visits(day: str) -> pd.DataFrame:
    """The visits on ``day`` (YYYY-MM-DD)."""
    frame = visits()
    return frame[frame[DATE_COLUMN] == pd.Timestamp(day)].reset_index(drop=True)


def data_version(frame: pd.DataFrame) -> str:
    """A digest of the rows and columns: equal frames, equal versions."""
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(",".join(frame.columns).encode() + rows).hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    """A history split for training: features and target, train and test rows."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def split(frame: pd.DataFrame, test_fraction: float, seed: int) -> Split:
    """Train and test rows of ``frame``, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        frame[feature_columns()], frame[TARGET], test_size=test_fraction, random_state=seed
    )
    return Split(x_train, x_test, y_train, y_test)
