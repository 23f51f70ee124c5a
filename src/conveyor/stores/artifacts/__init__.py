"""The artifact store: bytes over fsspec under one content-addressing layer."""
