"""Experiment tracking: runs, params, metrics, tags, artifacts and lineage over the stores."""
