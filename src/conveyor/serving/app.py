"""`create_app`: the ASGI app that serves registered models over three protocols.

Open Inference V2 (``/v2/...``), KServe V1 (``/v1/models/{m}:predict``) and MLflow
scoring (``/invocations``, ``/ping``, ``/health``, ``/version``), plus ``/metrics``.
Every answer carries ``x-model-version: name/version``; a bad request gets a 4xx JSON
body naming the field and the rule, never a 500.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import NotFoundError
from conveyor.serving import protocols
from conveyor.serving.errors import HTTPProblem
from conveyor.serving.metrics import Metrics
from conveyor.serving.model import Prediction, ServedModel

if TYPE_CHECKING:
    from conveyor.registry.registry import Registry

__all__ = ["create_app"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int, version: str) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers={"x-model-version": version},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes.

    ``content-length`` is checked before reading; a chunked body is counted as it streams.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPProblem(400, "content-length is not a number", "content-length", "integer")
        if int(declared) > limit:
            raise HTTPProblem(
                413, f"the body is larger than {limit} bytes", "body", f"at most {limit} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(
                413, f"the body is larger than {limit} bytes", "body", f"at most {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class _Server:
    def __init__(self, models: dict[str, ServedModel], metrics: Metrics, limit: int) -> None:
        self.models = models
        self.metrics = metrics
        self.limit = limit
        self.first = next(iter(models.values()))

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise HTTPProblem(
                404,
                f"no model {name!r} is served here; served: {', '.join(self.models)}",
                "model",
                "served model",
            )
        return self.models[name]

    def wrap(self, protocol: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            name = request.path_params.get("model", self.first.name)
            served = self.models.get(name, self.first)
            try:
                response = await handler(request)
            except HTTPProblem as exc:
                response = _json(exc.body(), exc.status, served.version_label)
            except NotFoundError as exc:
                problem = HTTPProblem(404, str(exc), "model", "exists")
                response = _json(problem.body(), 404, served.version_label)
            except Exception:
                log.exception("serving: %s %s failed", request.method, request.url.path)
                problem = HTTPProblem(503, "internal error; it was logged")
                response = _json(problem.body(), 503, served.version_label)
            version = response.headers.get("x-model-version", served.version_label)
            self.metrics.request(
                name if name in self.models else "unknown",
                version.rpartition("/")[2],
                protocol,
                response.status_code,
                time.perf_counter() - started,
            )
            return response

        return endpoint

    async def _json_body(self, request: Request, served: ServedModel) -> Any:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise HTTPProblem(
                415, f"content type {kind!r} is not application/json", "content-type", "JSON"
            )
        body = await read_body(request, self.limit)
        return protocols.parse_json(body, served.current.signature)

    # -- Open Inference V2 ---------------------------------------------------
    async def live(self, request: Request) -> Response:
        return _json({"live": True}, 200, self.first.version_label)

    async def ready(self, request: Request) -> Response:
        return _json({"ready": True}, 200, self.first.version_label)

    async def v2_server(self, request: Request) -> Response:
        meta = {"name": "conveyor", "version": _version(), "extensions": []}
        return _json(meta, 200, self.first.version_label)

    async def v2_model(self, request: Request) -> Response:
        served = self.model(request.path_params["model"])
        signature = served.current.signature
        inputs = [
            {"name": c.name, "datatype": _v2_of(c.dtype), "shape": [-1]} for c in signature.columns
        ]
        meta = {
            "name": served.name,
            "versions": [str(served.current.version.version)],
            "platform": served.current.version.format,
            "inputs": inputs,
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
        }
        return _json(meta, 200, served.version_label)

    async def v2_model_ready(self, request: Request) -> Response:
        served = self.model(request.path_params["model"])
        return _json({"name": served.name, "ready": True}, 200, served.version_label)

    async def v2_infer(self, request: Request) -> Response:
        served = self.model(request.path_params["model"])
        data = await self._json_body(request, served)
        frame = protocols.frame_from_v2(data, served.current.signature)
        result = await served.predict(served.validate(frame), proba=True)
        outputs = [_output("predict", result.predict)]
        if result.proba is not None:
            outputs.append(_output("predict_proba", result.proba))
        answer: dict[str, Any] = {
            "model_name": served.name,
            "model_version": str(result.number),
            "outputs": outputs,
        }
        if isinstance(data.get("id"), str):
            answer["id"] = data["id"]
        return _json(answer, 200, result.version)

    # -- KServe V1 -------------------------------------------------------------
    async def v1_predict(self, request: Request) -> Response:
        target = request.path_params["target"]
        name, sep, verb = target.rpartition(":")
        if not sep or verb != "predict":
            raise HTTPProblem(
                404, f"no route {request.url.path!r}", "path", "/v1/models/{m}:predict"
            )
        served = self.model(name)
        data = await self._json_body(request, served)
        frame = protocols.frame_from_v1(data, served.current.signature)
        result = await served.predict(served.validate(frame))
        return _predictions(result)

    # -- MLflow scoring --------------------------------------------------------
    async def ping(self, request: Request) -> Response:
        return Response(b"\n", 200, headers={"x-model-version": self.first.version_label})

    async def version(self, request: Request) -> Response:
        headers = {"x-model-version": self.first.version_label}
        return Response(_version(), 200, headers=headers, media_type="text/plain")

    async def invocations(self, request: Request) -> Response:
        served = self.first
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind == "text/csv":
            frame = protocols.parse_csv(await read_body(request, self.limit))
        else:
            data = await self._json_body(request, served)
            frame = protocols.frame_from_mlflow(data, served.current.signature)
        result = await served.predict(served.validate(frame))
        return _predictions(result)

    async def metrics_text(self, request: Request) -> Response:
        headers = {"x-model-version": self.first.version_label}
        return Response(
            self.metrics.render(), 200, headers=headers, media_type="text/plain; version=0.0.4"
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "unknown"


def _predictions(result: Prediction) -> Response:
    return _json({"predictions": protocols.jsonable(result.predict)}, 200, result.version)


def _output(name: str, values: Any) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": protocols.v2_datatype(values),
        "shape": list(values.shape),
        "data": protocols.jsonable(values.reshape(-1)),
    }


def _v2_of(dtype: str) -> str:
    kinds = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32"}
    return kinds.get(dtype, "BOOL" if dtype == "bool" else "BYTES")


def create_app(
    registry: Registry,
    refs: list[str],
    *,
    max_body_bytes: int = 10_000_000,
    batch_wait_ms: float = 2.0,
    max_batch: int = 64,
    poll_seconds: float = 2.0,
) -> Starlette:
    """The serving app for ``refs`` (``name@alias``, ``name/3`` or ``name``), one per model.

    Each version is loaded now; batchers and alias pollers start with the app.

    Args:
        registry: where versions are loaded from.
        refs: what to serve; the first also answers ``/invocations``.
        max_body_bytes: the largest request body (413 above it).
        batch_wait_ms: the longest a batch waits for more requests once others are pending.
        max_batch: the most rows in one batch.
        poll_seconds: how often an alias is read for moves.

    Raises:
        ValidationError: no refs, or two refs name the same model.
        NotFoundError: a ref names no version.
    """
    from conveyor.errors import ValidationError

    if not refs:
        raise ValidationError("refs", "name at least one model to serve")
    models: dict[str, ServedModel] = {}
    metrics = Metrics(lambda: {n: m.queue_depth for n, m in models.items()})
    for ref in refs:
        served = ServedModel(
            registry,
            ref,
            metrics,
            batch_wait_ms=batch_wait_ms,
            max_batch=max_batch,
            poll_seconds=poll_seconds,
        )
        if served.name in models:
            raise ValidationError("refs", f"model {served.name!r} is named twice")
        models[served.name] = served
    server = _Server(models, metrics, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for served in models.values():
            await served.start()
        try:
            yield
        finally:
            for served in models.values():
                await served.stop()

    w = server.wrap
    routes = [
        Route("/v2/health/live", w("v2", server.live)),
        Route("/v2/health/ready", w("v2", server.ready)),
        Route("/v2", w("v2", server.v2_server)),
        Route("/v2/models/{model}", w("v2", server.v2_model)),
        Route("/v2/models/{model}/ready", w("v2", server.v2_model_ready)),
        Route("/v2/models/{model}/infer", w("v2", server.v2_infer), methods=["POST"]),
        Route("/v1/models/{target}", w("v1", server.v1_predict), methods=["POST"]),
        Route("/ping", w("mlflow", server.ping)),
        Route("/health", w("mlflow", server.ping)),
        Route("/version", w("mlflow", server.version)),
        Route("/invocations", w("mlflow", server.invocations), methods=["POST"]),
        Route("/metrics", w("metrics", server.metrics_text)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.models = models
    app.state.metrics = metrics
    return app
