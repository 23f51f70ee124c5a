"""Model serving: an ASGI app speaking Open Inference V2, KServe V1 and MLflow scoring.

Requests are validated against the served version's signature, batched adaptively
per model, and answered by whichever version is current; an alias is polled and a
new version swapped in without failing a request.
"""

from __future__ import annotations

from conveyor.serving.app import create_app

__all__ = ["create_app"]
