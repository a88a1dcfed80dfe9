"""Development tools, not the library: ``make demo`` / ``make dev`` (:mod:`.demo`, run as
``python -m dagma.dev.demo``) and the local MLflow server they start (:mod:`.local_mlflow`)."""
