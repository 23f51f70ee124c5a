"""The one exception the serving handlers raise to answer a client error."""

from __future__ import annotations

__all__ = ["HTTPProblem"]


class HTTPProblem(Exception):
    """A request the server refuses, answered as ``{"error", "field", "rule"}`` JSON.

    Attributes:
        status: the HTTP status (4xx, or 503 for an internal failure).
        error: the message for the client.
        field: the offending field, or None.
        rule: the rule it breaks, or None.
    """

    def __init__(
        self, status: int, error: str, field: str | None = None, rule: str | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.rule = rule

    def body(self) -> dict[str, str | None]:
        """The JSON body of the answer."""
        return {"error": self.error, "field": self.field, "rule": self.rule}
