"""Params, metrics and tags held back and sent to MLflow together, in one ``log_batch`` request.

A request per value is what makes logging slow (10,000 ``log_metric`` calls are
10,000 round trips); MLflow's ``log_batch`` takes up to 1,000 entities at once.
The buffer says when it is full; the tracking resource then flushes it, and also
before an artifact upload and when the run closes, so nothing logged is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# MLflow's per-request limits (mlflow.utils.validation); a test keeps them in step.
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
# Stay well under MLflow's 1 MB request limit when values are long.
MAX_BATCH_CHARACTERS = 500_000


@dataclass
class LogBuffer:
    """What one run has logged and not sent yet."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # later values replace earlier ones
    # (key, value, timestamp in ms, step), in the order they were logged
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    characters: int = 0

    def add_params(self, params: dict[str, str]) -> None:
        self.params.update(params)
        self.characters += sum(len(k) + len(v) for k, v in params.items())

    def add_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)
        self.characters += sum(len(k) + len(v) for k, v in tags.items())

    def add_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.metrics.extend((key, value, now, step) for key, value in metrics.items())
        self.characters += sum(len(k) + 24 for k in metrics)

    @property
    def empty(self) -> bool:
        return not (self.params or self.tags or self.metrics)

    @property
    def full(self) -> bool:
        """Whether one more entity could overflow a single ``log_batch`` request."""
        return (
            len(self.params) + len(self.tags) + len(self.metrics) >= MAX_ENTITIES_PER_BATCH
            or len(self.params) >= MAX_PARAMS_TAGS_PER_BATCH
            or len(self.tags) >= MAX_PARAMS_TAGS_PER_BATCH
            or self.characters >= MAX_BATCH_CHARACTERS
        )

    def take(self) -> LogBuffer:
        """Hand over the contents and start empty."""
        taken = LogBuffer(self.params, self.tags, self.metrics, self.characters)
        self.params, self.tags, self.metrics, self.characters = {}, {}, [], 0
        return taken
