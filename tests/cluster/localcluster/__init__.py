"""A real single-node Kubernetes cluster on this machine, every component a host process.

``python -m localcluster up|down`` (``make cluster-up`` / ``make cluster-down``).
"""
