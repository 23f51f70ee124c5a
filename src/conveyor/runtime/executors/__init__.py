"""Executors: where step functions run (``submit(fn, ...) -> Future``)."""
