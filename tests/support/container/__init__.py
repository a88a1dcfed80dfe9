"""The container harness: a Docker engine, a base image, builds and host-network containers.

``engine`` finds or starts the engine and picks a client able to build with
BuildKit; ``base_image`` provides a base image even where no registry answers;
``build`` builds images behind a TLS-intercepting proxy; ``run`` runs
containers on the host network. docs/testing.md describes the whole harness.
"""
