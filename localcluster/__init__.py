"""A real single-node Kubernetes cluster on this machine, every component a host process.

A tool of its own, importable and runnable without the tests: ``python -m localcluster
up|down`` from the repository root (``make cluster-up`` / ``make cluster-down``). Its
settings are :mod:`localcluster.settings`; the pinned Go build modules of its binaries are
in ``go/``, the Dockerfiles of its stand-in images in ``images/``. docs/local-cluster.md
describes it.
"""
