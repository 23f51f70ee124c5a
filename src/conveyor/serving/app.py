"""`create_app`: the ASGI app that serves registered models over three protocols.

Open Inference V2 (``/v2/...``), KServe V1 (``/v1/models/{m}:predict``) and MLflow
scoring (``/invocations``, ``/ping``, ``/health``, ``/version``), plus ``/metrics``.
Every answer carries ``x-model-version: name/version``; a bad request gets a 4xx JSON
body naming the field and the rule, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import NotFoundError, ValidationError
from conveyor.serving import protocols
from conveyor.serving.capture import CaptureWriter
from conveyor.serving.errors import HTTPProblem
from conveyor.serving.metrics import Metrics
from conveyor.serving.model import Prediction, ServedModel
from conveyor.serving.router import TrafficRouter, render_route_metrics

if TYPE_CHECKING:
    from conveyor.core.registry import Signature
    from conveyor.registry.registry import Registry
    from conveyor.stores.artifacts.base import ByteStore
    from conveyor.stores.metadata.loop import LoopStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)

Handler = Callable[[Request, "_Call"], Awaitable[Response]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_RULE = "at most 128 characters of A-Z a-z 0-9 . _ : -"
_MAX_SHADOWS = 256  # shadow copies in flight; beyond it a copy is skipped (and counted)


class _Call:
    """What one request carries through its handler: its id, route, rows and answer."""

    __slots__ = ("arrived_ms", "capture", "inputs", "result", "rid", "route", "router", "served")

    def __init__(self, rid: str | None, capture: bool) -> None:
        self.rid = rid
        self.arrived_ms = int(time.time() * 1000)
        self.capture = capture
        self.served: ServedModel | None = None
        self.route = "primary"
        self.router: TrafficRouter | None = None
        self.inputs: Any = None
        self.result: Prediction | None = None


def _request_id(value: str, field: str) -> str:
    if not isinstance(value, str) or _REQUEST_ID.fullmatch(value) is None:
        raise HTTPProblem(400, f"{field} must be {_REQUEST_ID_RULE}", field, _REQUEST_ID_RULE)
    return value


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
    def __init__(
        self,
        models: dict[str, ServedModel],
        metrics: Metrics,
        limit: int,
        *,
        capture: CaptureWriter | None = None,
        feedback_store: ByteStore | None = None,
        failed: dict[str, str] | None = None,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.limit = limit
        self.first = next(iter(models.values()))
        self.capture = capture
        self.feedback_store = feedback_store
        self.failed = failed or {}
        self.routers: dict[str, TrafficRouter] = {}
        self.shadows: set[asyncio.Task[None]] = set()
        self.skipped_shadows = 0

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            if name in self.failed:
                raise HTTPProblem(
                    503,
                    f"model {name!r} could not be loaded: {self.failed[name]}",
                    "model",
                    "loads",
                )
            raise HTTPProblem(
                404,
                f"no model {name!r} is served here; served: {', '.join(self.models)}",
                "model",
                "served model",
            )
        return self.models[name]

    def wrap(
        self, protocol: str, handler: Handler, *, predicts: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        capture = self.capture if predicts else None

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            name = request.path_params.get("model", self.first.name)
            served = self.models.get(name, self.first)
            call = _Call(None, capture is not None and capture.sampled())
            try:
                given = request.headers.get("x-request-id")
                if given is not None:
                    call.rid = _request_id(given, "X-Request-ID")
                response = await handler(request, call)
            except HTTPProblem as exc:
                response = _json(exc.body(), exc.status, served.version_label)
            except NotFoundError as exc:
                problem = HTTPProblem(404, str(exc), "model", "exists")
                response = _json(problem.body(), 404, served.version_label)
            except Exception:
                log.exception("serving: %s %s failed", request.method, request.url.path)
                problem = HTTPProblem(503, "internal error; it was logged")
                response = _json(problem.body(), 503, served.version_label)
            if call.rid is None:
                call.rid = uuid.uuid4().hex
            response.headers["x-request-id"] = call.rid
            version = response.headers.get("x-model-version", served.version_label)
            seconds = time.perf_counter() - started
            self.metrics.request(
                name if name in self.models else "unknown",
                version.rpartition("/")[2],
                protocol,
                response.status_code,
                seconds,
            )
            if predicts and call.served is not None:
                self._after(call, response.status_code, seconds)
            return response

        return endpoint

    # -- after a prediction: route metrics, capture, shadow --------------------
    def _after(self, call: _Call, status: int, seconds: float) -> None:
        served = call.served
        assert served is not None
        assert call.rid is not None
        result = call.result
        version = result.number if result is not None else served.current.version.version
        router = call.router
        if router is not None and router.routes.active:
            router.observe(call.route, version, status, seconds)
        capture = self.capture
        if not call.capture or capture is None:
            return
        fields = (served.name, version, call.route, call.rid, call.arrived_ms, seconds * 1000)
        if result is None:  # refused: no rows
            capture.record(*fields, status)
            return
        capture.record(
            *fields,
            status,
            call.inputs,
            _columns(served, call.inputs),
            result.predict,
            result.proba,
            result.batch,
            result.start,
        )

    async def _predict(
        self,
        request: Request,
        call: _Call,
        served: ServedModel,
        parse: Callable[[Any], Any],
        proba: bool = False,
    ) -> Prediction:
        """Route, parse, validate and predict one request; spawn its shadow copy."""
        router = self.routers.get(served.name)
        route, target = ("primary", served) if router is None else router.pick(request.headers)
        call.served, call.route, call.router = target, route, router
        batch = parse(target.current.signature)
        rows = target.validate(batch)
        call.inputs = rows
        result = await target.predict(rows, proba=proba or call.capture)
        call.result = result
        if router is not None:
            shadow = router.routes.shadow
            if shadow is not None:
                self._spawn_shadow(router, shadow, batch, call)
        return result

    def _spawn_shadow(
        self, router: TrafficRouter, shadow: ServedModel, batch: Any, call: _Call
    ) -> None:
        if len(self.shadows) >= _MAX_SHADOWS:
            self.skipped_shadows += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._shadow(router, shadow, batch, call.rid or "", call.arrived_ms, call.capture)
        )
        self.shadows.add(task)
        task.add_done_callback(self.shadows.discard)

    async def _shadow(
        self,
        router: TrafficRouter,
        shadow: ServedModel,
        batch: Any,
        rid: str,
        arrived_ms: int,
        capture: bool,
    ) -> None:
        """Answer a copy of a request on the shadow version: counted and captured, never sent."""
        started = time.perf_counter()
        version = shadow.current.version.version
        rows: Any = None
        result: Prediction | None = None
        try:
            rows = shadow.validate(batch)
            result = await shadow.predict(rows, proba=True)
            version, status = result.number, 200
        except HTTPProblem as exc:
            status = exc.status
        except Exception:
            log.exception("serving %s: the shadow version failed", shadow.name)
            status = 503
        seconds = time.perf_counter() - started
        router.observe("shadow", version, status, seconds)
        writer = self.capture
        if not capture or writer is None:
            return
        fields = (shadow.name, version, "shadow", rid, arrived_ms, seconds * 1000)
        if result is None:  # refused: no rows
            writer.record(*fields, status)
            return
        writer.record(
            *fields,
            status,
            rows,
            _columns(shadow, rows),
            result.predict,
            result.proba,
            result.batch,
            result.start,
        )

    async def _json_body(self, request: Request, served: ServedModel) -> Any:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise HTTPProblem(
                415, f"content type {kind!r} is not application/json", "content-type", "JSON"
            )
        body = await read_body(request, self.limit)
        return protocols.parse_json(body, served.current.signature)

    async def _plain_json(self, request: Request) -> Any:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise HTTPProblem(
                415, f"content type {kind!r} is not application/json", "content-type", "JSON"
            )
        body = await read_body(request, self.limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPProblem(
                400, f"the body is not valid JSON: {exc}", "body", "valid JSON"
            ) from exc

    # -- Open Inference V2 ---------------------------------------------------
    async def live(self, request: Request, call: _Call) -> Response:
        return _json({"live": True}, 200, self.first.version_label)

    async def ready(self, request: Request, call: _Call) -> Response:
        return _json({"ready": True}, 200, self.first.version_label)

    async def v2_server(self, request: Request, call: _Call) -> Response:
        meta = {"name": "conveyor", "version": _version(), "extensions": []}
        return _json(meta, 200, self.first.version_label)

    async def v2_model(self, request: Request, call: _Call) -> Response:
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

    async def v2_model_ready(self, request: Request, call: _Call) -> Response:
        served = self.model(request.path_params["model"])
        return _json({"name": served.name, "ready": True}, 200, served.version_label)

    async def v2_infer(self, request: Request, call: _Call) -> Response:
        served = self.model(request.path_params["model"])
        data = await self._json_body(request, served)
        body_id = data.get("id") if isinstance(data, dict) else None
        if call.rid is None:
            call.rid = uuid.uuid4().hex if body_id is None else _request_id(body_id, "id")
        result = await self._predict(
            request, call, served, lambda sig: protocols.frame_from_v2(data, sig), proba=True
        )
        outputs = [_output("predict", result.predict)]
        if result.proba is not None:
            outputs.append(_output("predict_proba", result.proba))
        wanted = data.get("outputs")
        if wanted is not None:
            outputs = _selected(outputs, wanted)
        answer: dict[str, Any] = {
            "id": body_id if isinstance(body_id, str) else call.rid,
            "model_name": served.name,
            "model_version": str(result.number),
            "outputs": outputs,
        }
        return _json(answer, 200, result.version)

    async def feedback(self, request: Request, call: _Call) -> Response:
        from conveyor.stores.capture import write_feedback

        served = self.model(request.path_params["model"])
        if self.feedback_store is None:
            raise HTTPProblem(503, "feedback is not stored by this server", "feedback", "store")
        ids, labels, rows = _feedback_fields(await self._plain_json(request))
        try:
            key = await asyncio.to_thread(
                write_feedback, self.feedback_store, served.name, ids, labels, rows
            )
        except ValidationError as exc:
            raise HTTPProblem(422, str(exc), exc.field, exc.rule) from exc
        answer = {"model_name": served.name, "labels": len(ids), "key": key}
        return _json(answer, 200, served.version_label)

    # -- KServe V1 -------------------------------------------------------------
    async def v1_predict(self, request: Request, call: _Call) -> Response:
        target = request.path_params["target"]
        name, sep, verb = target.rpartition(":")
        if not sep or verb != "predict":
            raise HTTPProblem(
                404, f"no route {request.url.path!r}", "path", "/v1/models/{m}:predict"
            )
        served = self.model(name)
        data = await self._json_body(request, served)
        result = await self._predict(
            request, call, served, lambda sig: protocols.frame_from_v1(data, sig)
        )
        return _predictions(result)

    # -- MLflow scoring --------------------------------------------------------
    async def ping(self, request: Request, call: _Call) -> Response:
        headers = {"x-model-version": self.first.version_label}
        return Response(b"\n", 200, headers=headers, media_type="text/plain")

    async def version(self, request: Request, call: _Call) -> Response:
        headers = {"x-model-version": self.first.version_label}
        return Response(_version(), 200, headers=headers, media_type="text/plain")

    async def invocations(self, request: Request, call: _Call) -> Response:
        served = self.first
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind == "text/csv":
            frame = protocols.parse_csv(await read_body(request, self.limit))
            result = await self._predict(request, call, served, lambda sig: frame)
        else:
            data = await self._json_body(request, served)
            result = await self._predict(
                request, call, served, lambda sig: protocols.frame_from_mlflow(data, sig)
            )
        return _predictions(result)

    async def metrics_text(self, request: Request, call: _Call) -> Response:
        headers = {"x-model-version": self.first.version_label}
        lines = [self.metrics.render().rstrip("\n")]
        if self.capture is not None:
            lines += self.capture.render_metrics()
        if self.routers:
            lines += render_route_metrics(list(self.routers.values()))
        lines += _server_lines(self)
        text = "\n".join(lines) + "\n"
        return Response(text, 200, headers=headers, media_type="text/plain; version=0.0.4")

    async def openapi(self, request: Request, call: _Call) -> Response:
        from conveyor.serving.openapi import openapi_document

        document = openapi_document(list(self.models), _version())
        return _json(document, 200, self.first.version_label)


def _server_lines(server: _Server) -> list[str]:
    shadow = "conveyor_shadow_skipped_total"
    failed = "conveyor_model_load_failed"
    lines = [
        f"# HELP {shadow} Shadow copies skipped: too many in flight.",
        f"# TYPE {shadow} counter",
        f"{shadow} {server.skipped_shadows}",
        f"# HELP {failed} A model that could not be loaded at start, and why (1).",
        f"# TYPE {failed} gauge",
    ]
    for name, why in sorted(server.failed.items()):
        reason = _escape(why[:300])
        lines.append(f'{failed}{{model="{name}",reason="{reason}"}} 1')
    return lines


def _selected(outputs: list[dict[str, Any]], wanted: Any) -> list[dict[str, Any]]:
    """The outputs a V2 request names in ``outputs`` (400 naming an unknown one)."""
    if not isinstance(wanted, list) or not all(
        isinstance(w, dict) and isinstance(w.get("name"), str) for w in wanted
    ):
        raise HTTPProblem(400, "outputs must be a list of {name}", "outputs", "list of {name}")
    by_name = {o["name"]: o for o in outputs}
    for w in wanted:
        if w["name"] not in by_name:
            raise HTTPProblem(
                400,
                f"no output {w['name']!r}; outputs: {', '.join(by_name)}",
                "outputs",
                "known output",
            )
    return [by_name[w["name"]] for w in wanted] if wanted else outputs


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _columns(served: ServedModel, inputs: Any) -> tuple[str, ...]:
    if inputs is None or not isinstance(inputs, np.ndarray):
        return ()  # a frame names its own columns
    return _names(served.current.signature)


_NAMES: dict[int, tuple[Signature, tuple[str, ...]]] = {}


def _names(signature: Signature) -> tuple[str, ...]:
    """The signature's column names, cached by identity (hashing a signature walks it)."""
    found = _NAMES.get(id(signature))
    if found is None or found[0] is not signature:
        if len(_NAMES) >= 64:
            _NAMES.clear()
        found = _NAMES[id(signature)] = (signature, tuple(c.name for c in signature.columns))
    return found[1]


def _feedback_fields(data: Any) -> tuple[list[str], list[Any], list[int] | None]:
    """``request_ids``, ``labels`` and ``rows`` of a feedback body, checked (400/422)."""
    if not isinstance(data, dict):
        raise HTTPProblem(400, "the body must be a JSON object", "body", "object")
    unknown = sorted(set(data) - {"request_ids", "labels", "rows"})
    if unknown:
        raise HTTPProblem(
            422,
            f"unknown field {unknown[0]!r}; fields: request_ids, labels, rows",
            unknown[0],
            "known field",
        )
    ids, labels, rows = data.get("request_ids"), data.get("labels"), data.get("rows")
    if not isinstance(ids, list) or not ids:
        raise HTTPProblem(422, "request_ids must be a non-empty list", "request_ids", "required")
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or _REQUEST_ID.fullmatch(rid) is None:
            raise HTTPProblem(
                422, f"request_ids[{i}] must be {_REQUEST_ID_RULE}", "request_ids", _REQUEST_ID_RULE
            )
    if not isinstance(labels, list) or len(labels) != len(ids):
        raise HTTPProblem(
            422,
            f"labels must be a list of {len(ids)} labels, one per request id",
            "labels",
            "one per request id",
        )
    for i, label in enumerate(labels):
        if label is None or isinstance(label, list | dict):
            raise HTTPProblem(
                422, f"labels[{i}] must be a number, a boolean or a string", "labels", "scalar"
            )
    if rows is not None:
        if not isinstance(rows, list) or len(rows) != len(ids):
            raise HTTPProblem(
                422, f"rows must be a list of {len(ids)} row numbers", "rows", "one per request id"
            )
        for i, row in enumerate(rows):
            if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < 2**31:
                raise HTTPProblem(
                    422, f"rows[{i}] must be an integer from 0", "rows", "non-negative integer"
                )
    return ids, labels, rows


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


def _freeze_heap() -> None:
    """Leave what is loaded by now out of the cyclic collector's full passes (ADR 16).

    A server keeps its libraries and models for its whole life: hundreds of thousands
    of objects that each full collection walks again. Captured requests live until
    their file is written, so they push the collector into those passes far more
    often: at 7,000-8,000 one-row requests a second that cost about 15% of throughput.
    """
    gc.collect()
    gc.freeze()


def create_app(
    registry: Registry,
    refs: list[str],
    *,
    max_body_bytes: int = 10_000_000,
    batch_wait_ms: float = 2.0,
    max_batch: int = 64,
    poll_seconds: float = 2.0,
    capture: CaptureWriter | None = None,
    feedback_store: ByteStore | None = None,
    loop_store: LoopStore | None = None,
    traffic_poll_seconds: float = 1.0,
    freeze_heap: bool = True,
) -> Starlette:
    """The serving app for ``refs`` (``name@alias``, ``name/3`` or ``name``), one per model.

    Each version is loaded now; batchers, alias pollers, traffic routers and the
    capture thread start with the app (its lifespan) and stop with it; buffered
    capture rows are written on shutdown. With several refs, a model that cannot
    be loaded (e.g. a pickled version not registered trusted) is left out, logged
    and reported in /metrics, and its requests get a 503 naming why; the others
    are served.

    Args:
        registry: where versions are loaded from.
        refs: what to serve; the first also answers ``/invocations``.
        max_body_bytes: the largest request body (413 above it).
        batch_wait_ms: the longest a batch waits for more requests once others are pending.
        max_batch: the most rows in one batch.
        poll_seconds: how often an alias is read for moves.
        capture: writes what is answered to the capture log (None: nothing is captured).
        feedback_store: where ``POST /v2/models/{m}/feedback`` writes labels (default:
            the capture's store, else the registry's artifact store).
        loop_store: where each served alias's traffic policy (canary, shadow) is read;
            None serves every request from the primary.
        traffic_poll_seconds: how often the traffic policy is read.
        freeze_heap: once started, collect and then ``gc.freeze()`` what is loaded
            (libraries, models), so the collector's full passes skip it (ADR 16).

    Raises:
        ValidationError: no refs, or two refs name the same model.
        NotFoundError: a ref names no version.
        StateError: the only model cannot be loaded (e.g. it runs code on load and is
            not trusted).
    """
    if not refs:
        raise ValidationError("refs", "name at least one model to serve")
    models: dict[str, ServedModel] = {}
    failed: dict[str, str] = {}
    metrics = Metrics(lambda: {n: m.queue_depth for n, m in models.items()})
    for ref in refs:
        name = ref.partition("@")[0].partition("/")[0]
        if name in models or name in failed:
            raise ValidationError("refs", f"model {name!r} is named twice")
        try:
            served = ServedModel(
                registry,
                ref,
                metrics,
                batch_wait_ms=batch_wait_ms,
                max_batch=max_batch,
                poll_seconds=poll_seconds,
            )
        except (ValidationError, NotFoundError):
            raise
        except Exception as exc:
            if len(refs) == 1:
                raise
            log.error("serving: %s is left out: %s", ref, exc)
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        models[served.name] = served
    if not models:
        raise ValidationError("refs", f"no model could be loaded: {failed}")
    if feedback_store is None:
        feedback_store = capture.store if capture is not None else registry.artifacts.byte_store
    server = _Server(
        models,
        metrics,
        max_body_bytes,
        capture=capture,
        feedback_store=feedback_store,
        failed=failed,
    )
    if loop_store is not None:
        for served in models.values():
            if served.ref.alias is not None:
                server.routers[served.name] = TrafficRouter(
                    served,
                    functools.partial(loop_store.get_traffic, served.name, served.ref.alias),
                    functools.partial(
                        _load_side, registry, served.name, metrics, batch_wait_ms, max_batch
                    ),
                    poll_seconds=traffic_poll_seconds,
                )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for served in models.values():
            await served.start()
        if capture is not None:
            capture.start()
        for router in server.routers.values():
            await router.start()
        if freeze_heap:
            _freeze_heap()
        try:
            yield
        finally:
            for router in server.routers.values():
                await router.stop()
            for task in list(server.shadows):
                task.cancel()
            for served in models.values():
                await served.stop()
            if capture is not None:
                await asyncio.to_thread(capture.close)
            if freeze_heap:
                gc.unfreeze()  # an app stopped in a longer-lived process frees its garbage

    w = server.wrap
    routes = [
        Route("/v2/health/live", w("v2", server.live)),
        Route("/v2/health/ready", w("v2", server.ready)),
        Route("/v2", w("v2", server.v2_server)),
        Route("/v2/models/{model}", w("v2", server.v2_model)),
        Route("/v2/models/{model}/ready", w("v2", server.v2_model_ready)),
        Route(
            "/v2/models/{model}/infer",
            w("v2", server.v2_infer, predicts=True),
            methods=["POST"],
        ),
        Route("/v2/models/{model}/feedback", w("v2", server.feedback), methods=["POST"]),
        Route("/v1/models/{target}", w("v1", server.v1_predict, predicts=True), methods=["POST"]),
        Route("/ping", w("mlflow", server.ping)),
        Route("/health", w("mlflow", server.ping)),
        Route("/version", w("mlflow", server.version)),
        Route("/invocations", w("mlflow", server.invocations, predicts=True), methods=["POST"]),
        Route("/metrics", w("metrics", server.metrics_text)),
        Route("/openapi.json", w("openapi", server.openapi)),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _no_route, 405: _no_route},
    )
    app.state.models = models
    app.state.metrics = metrics
    app.state.capture = capture
    app.state.routers = server.routers
    return app


async def _no_route(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such path or method) as a JSON error, like every other."""
    status = int(getattr(exc, "status_code", 404))
    what = "route" if status == 404 else "method"
    problem = HTTPProblem(status, f"no {what} {request.method} {request.url.path}", "path", what)
    return Response(orjson.dumps(problem.body()), status, media_type="application/json")


async def _load_side(
    registry: Registry,
    name: str,
    metrics: Metrics,
    batch_wait_ms: float,
    max_batch: int,
    version: int,
) -> ServedModel:
    """Load, check (with its stored input example) and start ``name/version`` for a route."""

    def build() -> ServedModel:
        served = ServedModel(
            registry, f"{name}/{version}", metrics, batch_wait_ms=batch_wait_ms, max_batch=max_batch
        )
        check = getattr(served.current, "check", None)
        if callable(check):
            check()
        return served

    served = await asyncio.to_thread(build)
    await served.start()
    return served
