"""How many materializations a minute the production servers sustain: a bounded ramp.

:data:`RAMP` runs in a client pod (the run pods' image, MLflow settings, login and client
label: :func:`support.production_transfers.client_pod`), so its requests take the path a
run pod's do: the Service, the NetworkPolicy, basic auth, the two replicas, the artifact
proxy into the bucket. Each materialization makes the requests dagma's resource makes for
one in steady state (the run created with its tags, one batch of params and metrics, the
summary uploaded, the end: 4), with the official client and the ConfigMap's retry policy.
Workers double each level (1, 2, 4, 8, 16), each level 20 s, until a level sees an error or
a p95 over 1 s (at least two levels, to show how it scales); the servers' CPU per request
(basic auth checks the password hash on each, see docs/performance.md) is what bounds it.
Every run is tagged with the ramp's id, so the test can read them back.
"""

from __future__ import annotations

from dataclasses import dataclass

P95_LIMIT_SECONDS = 1.0
RAMP = """
import json, os, statistics, tempfile, threading, time, uuid
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

# As dagma ends a run: without the "View run" line, which costs a runs/get to print.
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

LEVELS, SECONDS = (1, 2, 4, 8, 16), 20
ramp = uuid.uuid4().hex
tracking = MlflowClient()
experiment = tracking.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT"]).experiment_id
summary = os.path.join(tempfile.mkdtemp(), "train_summary.txt")
with open(summary, "w") as file:
    file.write("n_estimators=10\\nrmse=0.123\\n")


def materialize(name):
    began = time.monotonic()
    run = tracking.create_run(experiment, run_name=name, tags={"dagma.load_ramp": ramp})
    tracking.log_batch(run.info.run_id, params=[Param("n_estimators", "10")],
                       metrics=[Metric("rmse", 0.123, int(time.time() * 1000), 0)])
    # As dagma uploads: to the location the create returned, no runs/get to find it.
    get_artifact_repository(run.info.artifact_uri).log_artifact(summary)
    tracking.set_terminated(run.info.run_id)
    return time.monotonic() - began


def level(workers):
    seconds, errors, deadline = [], [], time.monotonic() + SECONDS

    def work(worker):
        count = 0
        while time.monotonic() < deadline:
            count += 1
            try:
                seconds.append(materialize(f"load {workers}x {worker}.{count}"))
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:300])

    began = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    p95 = statistics.quantiles(seconds, n=20)[-1] if len(seconds) > 1 else max(seconds, default=0)
    return {"workers": workers, "done": len(seconds), "per_minute": len(seconds) * 60 / elapsed,
            "p50": statistics.median(seconds) if seconds else None, "p95": p95,
            "errors": len(errors), "first_error": errors[0] if errors else None}


levels = []
for workers in LEVELS:
    levels.append(level(workers))
    print(json.dumps(levels[-1]), flush=True)
    if len(levels) > 1 and (levels[-1]["errors"] or levels[-1]["p95"] > P95_LIMIT):
        break
print(json.dumps({"ramp": ramp, "levels": levels}))
"""


def ramp_script() -> str:
    """:data:`RAMP` with its p95 limit."""
    return f"P95_LIMIT = {P95_LIMIT_SECONDS}\n{RAMP}"


@dataclass(frozen=True)
class Level:
    """One level of the ramp, as the pod measured it."""

    workers: int
    done: int  # materializations that completed
    per_minute: float
    p50: float | None  # seconds per materialization
    p95: float
    errors: int
    first_error: str | None

    @property
    def sustained(self) -> bool:
        return self.errors == 0 and self.p95 <= P95_LIMIT_SECONDS

    def describe(self) -> str:
        p50 = f"{self.p50:.2f}" if self.p50 is not None else "-"
        errors = f", {self.errors} errors ({self.first_error})" if self.errors else ""
        return (f"{self.workers} workers: {self.per_minute:.0f}/min, p50 {p50} s, "
                f"p95 {self.p95:.2f} s{errors}")  # fmt: skip


def levels_of(result: dict) -> list[Level]:
    """The ramp's levels from the JSON its pod printed last."""
    return [Level(**level) for level in result["levels"]]
