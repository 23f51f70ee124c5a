"""Running pipelines: the runner, executors, serializers, caching and log capture."""
