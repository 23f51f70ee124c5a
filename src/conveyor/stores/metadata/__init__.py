"""The metadata store: experiments, runs, params, metrics, tags, artifacts and lineage."""
