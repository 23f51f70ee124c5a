"""Where things are kept: the metadata store (SQL) and the artifact store (bytes over fsspec)."""
