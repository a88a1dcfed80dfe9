"""Requests of a contender's first and second materialization in a fresh process, as JSON.

``python -m benchmarks.first_in_process CONTENDER TRACKING_URI [POINTS]`` prints
``{"first": {endpoint: count}, "later": {...}}``. A fresh interpreter, because
what a process caches (experiment id, reachability) is what "first" measures.
"""

import json
import sys

from benchmarks.contenders import build_job, materialize_once
from benchmarks.http_count import counting_requests


def main() -> None:
    contender, tracking_uri = sys.argv[1], sys.argv[2]
    points = int(sys.argv[3]) if len(sys.argv) > 3 else None
    job = build_job(contender, tracking_uri, points)
    counts = {}
    for which in ("first", "later"):
        with counting_requests(tracking_uri) as counted:
            materialize_once(job)
        counts[which] = dict(sorted(counted.items()))
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
