"""The OpenAPI 3.0 document of the serving app (``GET /openapi.json``), written by hand.

Every route with its request and response schemas; each error is the
``{"error", "field", "rule"}`` object of `conveyor.serving.errors.HTTPProblem`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_JSON = "application/json"
_TEXT = "text/plain"
_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "nullable": True},
        "rule": {"type": "string", "nullable": True},
    },
}

_HEADERS = {
    "X-Request-ID": {
        "description": "The request's id: the client's, the V2 body's id, or a generated one.",
        "schema": {"type": "string"},
    },
    "X-Model-Version": {
        "description": "name/version of the version that answered.",
        "schema": {"type": "string"},
    },
}

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}

_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string", "pattern": _ID_PATTERN},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}

_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "outputs", "id"],
    "properties": {
        "id": {"type": "string"},
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "datatype": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": {"type": "array", "items": {}},
                },
            },
        },
    },
}

_PREDICTIONS = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {"type": "array", "items": {}}},
}

_ROWS = {"type": "array", "minItems": 1, "items": {}}

_MLFLOW_REQUEST = {
    "type": "object",
    "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array", "items": {}}},
            },
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": _ROWS,
        "inputs": {"oneOf": [{"type": "object"}, _ROWS]},
    },
}

_FEEDBACK_REQUEST = {
    "type": "object",
    "required": ["request_ids", "labels"],
    "additionalProperties": False,
    "properties": {
        "request_ids": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": _ID_PATTERN},
        },
        "labels": {
            "type": "array",
            "items": {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]},
        },
        "rows": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
}

_FEEDBACK_RESPONSE = {
    "type": "object",
    "required": ["model_name", "labels"],
    "properties": {
        "model_name": {"type": "string"},
        "labels": {"type": "integer"},
        "key": {"type": "string", "nullable": True},
    },
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _answer(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": _HEADERS, "content": content}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Malformed body or header (names the field).",
        404: "No such model or route.",
        413: "Body over the limit.",
        415: "Unsupported content type.",
        422: "Rows break the model's signature (names the field and rule).",
        503: "A model could not be loaded, or an internal failure (logged).",
    }
    return {str(s): _answer(words[s], _json_content(_ERROR)) for s in statuses}


def _get(summary: str, schema: dict[str, Any], *errors: int, text: bool = False) -> dict[str, Any]:
    content = {_TEXT: {"schema": {"type": "string"}}} if text else _json_content(schema)
    return {
        "get": {
            "summary": summary,
            "parameters": [_REQUEST_ID],
            "responses": {"200": _answer("OK", content), **_errors(400, *errors)},
        }
    }


def _post(
    summary: str, body: dict[str, Any], answer: dict[str, Any], *, csv: bool = False
) -> dict[str, Any]:
    content = _json_content(body)
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "parameters": [_REQUEST_ID],
            "requestBody": {"required": True, "content": content},
            "responses": {
                "200": _answer("Predictions.", _json_content(answer)),
                **_errors(400, 404, 413, 415, 422, 503),
            },
        }
    }


_REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for the request (returned, captured, used for feedback).",
    "schema": {"type": "string", "pattern": _ID_PATTERN},
}

_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}


def _with_model(item: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": [_MODEL], **item}


def openapi_document(models: list[str], version: str) -> dict[str, Any]:
    """The OpenAPI document of a server that serves ``models``.

    Args:
        models: the served models' names (listed in the description).
        version: the server's version.
    """
    object_schema = {"type": "object"}
    paths: dict[str, Any] = {
        "/v2/health/live": _get("Liveness (Open Inference V2).", object_schema),
        "/v2/health/ready": _get("Readiness (Open Inference V2).", object_schema),
        "/v2": _get("Server metadata (Open Inference V2).", object_schema),
        "/v2/models/{model}": _with_model(_get("Model metadata.", object_schema, 404, 503)),
        "/v2/models/{model}/ready": _with_model(_get("Model readiness.", object_schema, 404, 503)),
        "/v2/models/{model}/infer": _with_model(
            _post(
                "Inference with typed tensors (Open Inference V2).", _INFER_REQUEST, _INFER_RESPONSE
            )
        ),
        "/v2/models/{model}/feedback": _with_model(
            _post(
                "Attach ground-truth labels to captured requests by request id.",
                _FEEDBACK_REQUEST,
                _FEEDBACK_RESPONSE,
            )
        ),
        "/v1/models/{target}": {
            "parameters": [
                {
                    "name": "target",
                    "in": "path",
                    "required": True,
                    "description": "MODEL:predict",
                    "schema": {"type": "string"},
                }
            ],
            **_post(
                "KServe V1 prediction.",
                {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {"instances": _ROWS},
                },
                _PREDICTIONS,
            ),
        },
        "/invocations": _post(
            "MLflow scoring (JSON or CSV) on the first served model.",
            _MLFLOW_REQUEST,
            _PREDICTIONS,
            csv=True,
        ),
        "/ping": _get("MLflow health.", {}, text=True),
        "/health": _get("MLflow health.", {}, text=True),
        "/version": _get("The server's version.", {}, text=True),
        "/metrics": _get("Prometheus metrics.", {}, text=True),
        "/openapi.json": _get("This document.", object_schema),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "conveyor serving",
            "version": version,
            "description": "Serves: " + ", ".join(models),
        },
        "paths": paths,
    }
