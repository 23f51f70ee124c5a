"""The CD checks a version passes before it reaches a stage: environment, infra, load, quality.

1. **environment**: every package (and version) of the version's environment lock
   is installed here, the Python matches (major.minor), the server's peak memory
   once loaded (measured in the sandbox, ``VmHWM``) fits ``resources.memory_mb``,
   and this host has the ``resources.cpu`` cores the deployment declares.
2. **infra**: the version is served by a separate, sandboxed process
   (`conveyor.delivery.sandbox`: a private copy, no network, memory- and
   time-limited) that answers ``/v2/health/ready`` and returns, for the stored
   input example, the stored expected output (numbers within rtol 1e-4 / atol 1e-6:
   serving may run a verified ONNX fast path in float32; other values exactly).
   NaN or infinity in any output (prediction or probability) fails.
3. **load**: ``load.requests`` requests of ``load.rows`` example rows at
   ``load.concurrency`` against that same server; client-side p50/p99 latency and
   the error rate must be within the SLO, and the CPU the server used (its CPU
   time over the wall time) within ``resources.cpu``.
4. **quality**: on a validated holdout (a `Holdout` given to `deploy`: features and
   labels, checked against the signature and for missing labels), the task
   metrics meet the policy's targets and the candidate is no worse than the
   version the gate's alias serves by more than ``gate.max_drop``. Without a
   holdout the metrics recorded with each version (its evaluation on its own
   test split) are compared, and the evidence says so.

Each check gives a `CheckResult`; `run_checks` stops at the first that fails, so a
version is stopped at the check that catches it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import ConveyorError, NotFoundError, ValidationError
from conveyor.registry.package import installed_version

if TYPE_CHECKING:
    from conveyor.core.registry import ModelVersion
    from conveyor.delivery.policy import DeploymentPolicy
    from conveyor.delivery.sandbox import Sandbox
    from conveyor.registry import LoadedModel, Registry

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "Holdout",
    "check_environment",
    "check_infra",
    "check_load",
    "check_quality",
    "run_checks",
]

CHECK_NAMES = ("environment", "infra", "load", "quality")
_RTOL, _ATOL = 1e-4, 1e-6
_GATE_DEFAULTS = ("roc_auc", "accuracy", "r2", "rmse")
_LOWER_IS_BETTER = frozenset({"log_loss", "ece", "rmse", "mae"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict: its name, whether it passed, why in words, and the numbers."""

    name: str
    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Holdout:
    """Validated data the quality check scores: features and their true labels.

    Args:
        X: the features (a DataFrame, or an array for a model registered from one).
        y: the labels, one per row, none missing.
        name: what it is, for the evidence (e.g. ``"flights 2013-03"``).

    Raises:
        ValidationError: it is empty, the lengths differ, or a label is missing.
    """

    X: Any
    y: Any
    name: str = "holdout"

    def __post_init__(self) -> None:
        rows = int(self.X.shape[0]) if hasattr(self.X, "shape") else len(self.X)
        labels = np.asarray(self.y).ravel()
        if rows == 0:
            raise ValidationError("holdout", "must hold at least one row")
        if len(labels) != rows:
            raise ValidationError("holdout.y", f"has {len(labels)} labels for {rows} rows of X")
        import pandas as pd

        missing = pd.isna(pd.Series(labels))
        if missing.any():
            raise ValidationError(
                "holdout.y", f"must have no missing labels (first at row {int(missing.argmax())})"
            )

    @property
    def rows(self) -> int:
        """How many rows it holds."""
        return len(np.asarray(self.y).ravel())


_CPU_SLACK = 1.5
_CPU_MIN_WALL_S = 0.1  # a shorter load test cannot tell how many cores the server used

# -- 1. environment ------------------------------------------------------------------------


def package_mismatches(version: ModelVersion) -> dict[str, dict[str, str | None]]:
    """Packages of the version's lock that are missing here or installed at another version."""
    out: dict[str, dict[str, str | None]] = {}
    for name, wanted in sorted(version.environment.packages.items()):
        found = installed_version(name)
        if found != wanted:
            out[name] = {"needs": wanted, "found": found}
    return out


def check_environment(
    version: ModelVersion, policy: DeploymentPolicy, memory_mb: float | None
) -> CheckResult:
    """Packages and Python of the lock present here; measured memory and declared CPU fit.

    Args:
        version: the version checked.
        policy: its deployment policy (``resources``).
        memory_mb: the peak memory of its server once loaded (None: not measured).
    """
    problems: list[str] = []
    mismatches = package_mismatches(version)
    for name, pair in mismatches.items():
        found = "missing" if pair["found"] is None else f"found {pair['found']}"
        problems.append(f"{name} {pair['needs']} needed, {found}")
    here = platform.python_version()
    wanted = version.environment.python
    if wanted and wanted.split(".")[:2] != here.split(".")[:2]:
        problems.append(f"Python {wanted} needed, running {here}")
    limit = policy.resources.memory_mb
    if memory_mb is not None and memory_mb > limit:
        problems.append(f"memory at load {memory_mb:.0f} MiB > resources.memory_mb {limit:g}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores is not None and policy.resources.cpu > cores:
        problems.append(f"resources.cpu {policy.resources.cpu:g} > {cores} cores here")
    evidence = {
        "packages": dict(version.environment.packages),
        "mismatches": mismatches,
        "python": {"needs": wanted, "found": here},
        "memory_mb": None if memory_mb is None else round(memory_mb, 1),
        "memory_limit_mb": limit,
        "cpu_declared": policy.resources.cpu,
        "cores_here": cores,
    }
    if problems:
        return CheckResult("environment", False, "; ".join(problems), evidence)
    memory = "not measured" if memory_mb is None else f"{memory_mb:.0f} MiB"
    detail = (
        f"{len(version.environment.packages)} packages match; memory at load {memory} "
        f"<= {limit:g} MiB; {policy.resources.cpu:g} CPU of {cores}"
    )
    return CheckResult("environment", True, detail, evidence)


# -- requests to the sandbox ---------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """How to ask the sandbox for predictions on some rows of the example."""

    path: str
    body: bytes
    protocol: str


def _v2_dtype(column: Any) -> str | None:
    kind = column.dtype.kind
    if kind == "f":
        return "FP64"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    if kind in "OSU" or str(column.dtype) == "category":
        return "BYTES"
    return None  # datetimes and the rest: V2 cannot carry them


def _values(column: Any, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [str(v) for v in column.tolist()]
    return list(column.tolist())


def build_request(model: str, example: Any, rows: int | None = None) -> _Request:
    """An Open Inference V2 request for ``rows`` rows of ``example`` (repeated if needed).

    Frames with columns V2 cannot carry (datetimes) go to ``/invocations`` instead.
    """
    import pandas as pd

    n = len(example) if rows is None else rows
    if isinstance(example, pd.DataFrame):
        frame = example.iloc[np.arange(n) % len(example)].reset_index(drop=True)
        types = {c: _v2_dtype(frame[c]) for c in frame.columns}
        if all(t is not None for t in types.values()):
            inputs = [
                {"name": str(c), "shape": [n], "datatype": t, "data": _values(frame[c], str(t))}
                for c, t in types.items()
            ]
            return _request_v2(model, inputs)
        split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
        body = json.dumps({"dataframe_split": split}).encode()
        return _Request("/invocations", body, "mlflow")
    array = np.asarray(example)
    array = array[np.arange(n) % len(array)]
    datatype = "FP64" if array.dtype.kind == "f" else "INT64"
    tensor = {"name": "input", "shape": list(array.shape), "datatype": datatype}
    return _request_v2(model, [tensor | {"data": array.reshape(-1).tolist()}])


def _request_v2(model: str, inputs: list[dict[str, Any]]) -> _Request:
    body = json.dumps({"inputs": inputs}).encode()
    return _Request(f"/v2/models/{model}/infer", body, "v2")


def _outputs(answer: Any, protocol: str) -> dict[str, np.ndarray]:
    """The outputs of an answer, by name, as arrays (null values become NaN)."""
    if protocol == "mlflow":
        return {"predict": _array(answer["predictions"], None)}
    return {o["name"]: _array(o["data"], o.get("shape")) for o in answer["outputs"]}


def _array(data: list[Any], shape: list[int] | None) -> np.ndarray:
    if any(v is None for v in data):
        data = [math.nan if v is None else v for v in data]
    array = np.asarray(data)
    return array.reshape(shape) if shape else array


def _non_finite(outputs: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    bad: dict[str, dict[str, int]] = {}
    for name, values in outputs.items():
        if values.dtype.kind not in "fc":
            continue
        nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        if nan or inf:
            bad[name] = {"nan": nan, "inf": inf}
    return bad


def _same(expected: np.ndarray, actual: np.ndarray) -> bool:
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return expected.size == actual.size and _same(expected.reshape(-1), actual.reshape(-1))
    if expected.dtype.kind in "biuf" and actual.dtype.kind in "biuf":
        return bool(np.allclose(expected, actual, rtol=_RTOL, atol=_ATOL, equal_nan=True))
    return [str(v) for v in expected.reshape(-1)] == [str(v) for v in actual.reshape(-1)]


# -- 2. infra ------------------------------------------------------------------------------


def read_example(registry: Registry, version: ModelVersion) -> tuple[Any, np.ndarray]:
    """The version's stored input example and expected output, read from its package."""
    from conveyor.registry.signature import decode_output, example_from_parquet

    manifest = json.loads(registry.artifacts.get_bytes(version.manifest_sha256))
    example_bytes = registry.artifacts.get_bytes(version.files["input_example.parquet"])
    example = example_from_parquet(example_bytes, version.signature)
    output_name = manifest["expected_output"]
    expected = decode_output(output_name, registry.artifacts.get_bytes(version.files[output_name]))
    return example, expected


def check_infra(sandbox: Sandbox, example: Any, expected: np.ndarray) -> CheckResult:
    """The sandboxed server answers health and reproduces the expected output, all finite."""
    evidence = sandbox.evidence()
    health = sandbox.call("GET", "/v2/health/ready", timeout=10.0)
    evidence["health_status"] = health.status
    if health.status != 200:
        return CheckResult("infra", False, f"health answered {health.status}", evidence)
    request = build_request(sandbox.version.name, example)
    started = time.perf_counter()
    answer = sandbox.call("POST", request.path, request.body, timeout=30.0)
    evidence |= {
        "protocol": request.protocol,
        "example_rows": len(example),
        "status": answer.status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if answer.status != 200:
        body = answer.body[:500].decode("utf-8", "replace")
        evidence["body"] = body
        detail = f"the example request answered {answer.status}: {body}"
        return CheckResult("infra", False, detail, evidence)
    outputs = _outputs(answer.json(), request.protocol)
    bad = _non_finite(outputs)
    evidence["outputs"] = {n: list(v.shape) for n, v in outputs.items()}
    if bad:
        evidence["non_finite"] = bad
        where = ", ".join(f"{n}: {c['nan']} NaN, {c['inf']} inf" for n, c in bad.items())
        return CheckResult("infra", False, f"non-finite outputs on the example ({where})", evidence)
    expected_bad = _non_finite({"expected": np.asarray(expected)})
    if expected_bad:
        evidence["non_finite"] = expected_bad
        return CheckResult("infra", False, "the stored expected output holds NaN/inf", evidence)
    predicted = outputs.get("predict", next(iter(outputs.values())))
    if not _same(np.asarray(expected), predicted):
        evidence["expected"] = np.asarray(expected).reshape(-1)[:10].tolist()
        evidence["answered"] = predicted.reshape(-1)[:10].tolist()
        detail = "the server's output differs from the stored expected output on the example"
        return CheckResult("infra", False, detail, evidence)
    detail = (
        f"sandboxed server ({'no network' if sandbox.network_isolated else 'network allowed'}, "
        f"{sandbox.spec.memory_mb:g} MiB limit) up in {evidence['startup_s']} s; health ok; "
        f"example of {len(example)} rows reproduced, outputs finite"
    )
    return CheckResult("infra", True, detail, evidence)


# -- 3. load -------------------------------------------------------------------------------


async def _drive(sandbox: Sandbox, path: str, body: bytes, requests: int, workers: int) -> Any:
    latencies: list[float] = []
    failures: dict[str, int] = {}
    remaining = iter(range(requests))

    async def worker() -> None:
        async with sandbox.connection(timeout=30.0) as conn:
            for _ in remaining:
                started = time.perf_counter()
                try:
                    answer = await conn.request("POST", path, body)
                    outcome = "ok" if answer.status == 200 else str(answer.status)
                except (OSError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                    await conn.close()
                latencies.append((time.perf_counter() - started) * 1000)
                if outcome != "ok":
                    failures[outcome] = failures.get(outcome, 0) + 1

    await asyncio.gather(*(worker() for _ in range(min(workers, requests))))
    return latencies, failures


def check_load(
    sandbox: Sandbox, example: Any, policy: DeploymentPolicy, memory_mb: float | None = None
) -> CheckResult:
    """A short load test: latency percentiles, error rate and CPU against the SLO."""
    spec, slo = policy.load, policy.slo
    request = build_request(sandbox.version.name, example, spec.rows)
    cpu_before = sandbox.cpu_seconds()
    started = time.perf_counter()
    from conveyor.delivery.sandbox import run_sync

    latencies, failures = run_sync(
        _drive(sandbox, request.path, request.body, spec.requests, spec.concurrency)
    )
    wall = time.perf_counter() - started
    cpu_after = sandbox.cpu_seconds()
    cores = None
    if cpu_before is not None and cpu_after is not None and wall > 0:
        cores = (cpu_after - cpu_before) / wall
    p50, p99 = (float(np.percentile(latencies, q)) for q in (50, 99))
    error_rate = sum(failures.values()) / spec.requests
    evidence: dict[str, Any] = {
        "requests": spec.requests,
        "concurrency": spec.concurrency,
        "rows_per_request": spec.rows,
        "protocol": request.protocol,
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(latencies), 3),
        "error_rate": error_rate,
        "errors": failures,
        "throughput_rps": round(spec.requests / wall, 1),
        "wall_s": round(wall, 3),
        "cpu_cores_used": None if cores is None else round(cores, 3),
        "slo": {"p50_ms": slo.p50_ms, "p99_ms": slo.p99_ms, "error_rate": slo.error_rate},
        "cpu_declared": policy.resources.cpu,
    }
    problems = []
    if p50 > slo.p50_ms:
        problems.append(f"p50 {p50:.2f} ms > SLO {slo.p50_ms:g} ms")
    if p99 > slo.p99_ms:
        problems.append(f"p99 {p99:.2f} ms > SLO {slo.p99_ms:g} ms")
    if error_rate > slo.error_rate:
        problems.append(f"error rate {error_rate:.2%} > SLO {slo.error_rate:.2%} ({failures})")
    # A saturated server spends about all the CPU it may; its helper threads (alias
    # poller, capture writer) add a little: only a clear excess fails.
    # Below _CPU_MIN_WALL_S the share is too noisy to judge: recorded, not enforced.
    allowed = max(policy.resources.cpu * _CPU_SLACK, policy.resources.cpu + 0.5)
    if cores is not None and cores > allowed and wall >= _CPU_MIN_WALL_S:
        problems.append(
            f"used {cores:.2f} CPU > resources.cpu {policy.resources.cpu:g} "
            f"(allowing {allowed:g} for the server's helper threads under saturation)"
        )
    if problems:
        return CheckResult("load", False, "; ".join(problems), evidence)
    detail = (
        f"{spec.requests} requests at concurrency {spec.concurrency}: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, {error_rate:.1%} errors, {spec.requests / wall:.0f} req/s"
    )
    return CheckResult("load", True, detail, evidence)


# -- 4. quality ----------------------------------------------------------------------------


def _metrics_on(model: LoadedModel, holdout: Holdout | None) -> dict[str, float]:
    if holdout is None:
        return {k: float(v) for k, v in model.version.metrics.items()}
    from conveyor.lifecycle import evaluate

    return dict(evaluate(model, holdout.X, holdout.y, plots=False).metrics)


def _gate_metric(policy: DeploymentPolicy, metrics: Mapping[str, float]) -> str | None:
    if policy.gate.metric is not None:
        return policy.gate.metric
    for name in (*policy.quality, *_GATE_DEFAULTS):
        if name in metrics:
            return name
    return None


def check_quality(
    candidate: LoadedModel,
    champion: LoadedModel | None,
    policy: DeploymentPolicy,
    holdout: Holdout | None = None,
) -> CheckResult:
    """Task metrics against the targets, and the gate against the champion."""
    source = holdout.name if holdout is not None else "recorded metrics"
    evidence: dict[str, Any] = {
        "source": source,
        "holdout_rows": None if holdout is None else holdout.rows,
        "gate_alias": policy.gate_alias(),
    }
    try:
        metrics = _metrics_on(candidate, holdout)
    except ConveyorError as exc:
        evidence["error"] = str(exc)
        return CheckResult("quality", False, f"the candidate cannot be scored: {exc}", evidence)
    evidence["metrics"] = metrics
    problems = []
    targets = {}
    for name, target in policy.quality.items():
        value = metrics.get(name)
        targets[name] = {"min": target.min, "max": target.max, "value": value}
        if value is None:
            problems.append(f"{name} not measured ({source})")
        elif (why := target.violation(value)) is not None:
            problems.append(f"{name} {why}")
    evidence["targets"] = targets
    gate = _gate(candidate, champion, policy, holdout, metrics, evidence)
    if gate is not None:
        problems.append(gate)
    if problems:
        return CheckResult("quality", False, "; ".join(problems), evidence)
    parts = [f"{n} {metrics[n]:.4g}" for n in policy.quality]
    gate_note = evidence.get("gate", {}).get("note", "")
    detail = f"on {source}: " + ", ".join(parts or ["no targets"]) + f"; gate: {gate_note}"
    return CheckResult("quality", True, detail, evidence)


def _gate(
    candidate: LoadedModel,
    champion: LoadedModel | None,
    policy: DeploymentPolicy,
    holdout: Holdout | None,
    metrics: Mapping[str, float],
    evidence: dict[str, Any],
) -> str | None:
    """Why the gate fails, or None; records the comparison in ``evidence['gate']``."""
    alias = policy.gate_alias()
    if champion is None:
        evidence["gate"] = {"note": f"no version at {alias}: no champion to beat"}
        return None
    if champion.version.version == candidate.version.version:
        evidence["gate"] = {"note": f"it is the version at {alias} already"}
        return None
    metric = _gate_metric(policy, metrics)
    if metric is None or metric not in metrics:
        return f"gate metric {metric!r} not measured for the candidate"
    try:
        theirs = _metrics_on(champion, holdout)
    except ConveyorError as exc:
        evidence["gate"] = {"champion": champion.version.ref, "error": str(exc)}
        return None if holdout is not None else f"the champion cannot be scored: {exc}"
    if metric not in theirs:
        evidence["gate"] = {"note": f"the champion has no {metric}: gate skipped"}
        return None
    ours, best = metrics[metric], theirs[metric]
    drop = (ours - best) if metric in _LOWER_IS_BETTER else (best - ours)
    passed = drop <= policy.gate.max_drop
    evidence["gate"] = {
        "champion": champion.version.ref,
        "metric": metric,
        "candidate": ours,
        "champion_value": best,
        "drop": drop,
        "max_drop": policy.gate.max_drop,
        "passed": passed,
        "note": f"{metric} {ours:.4g} vs {champion.version.ref} {best:.4g} at {alias}",
    }
    if passed:
        return None
    return (
        f"worse than the champion {champion.version.ref} at {alias}: {metric} {ours:.4g} vs "
        f"{best:.4g} (drop {drop:.4g} > max_drop {policy.gate.max_drop:g})"
    )


# -- all of them ---------------------------------------------------------------------------


def _champion(registry: Registry, name: str, alias: str) -> LoadedModel | None:
    try:
        return registry.load_model(f"{name}@{alias}")
    except NotFoundError:
        return None


def _guarded(name: str, check: Callable[[], CheckResult], sandbox: Sandbox) -> CheckResult:
    """Run a check against the sandbox; a server that stops answering fails the check."""
    try:
        return check()
    except (OSError, TimeoutError) as exc:
        evidence = sandbox.evidence() | {"error": repr(exc), "exit_code": sandbox.exit_code()}
        evidence["log"] = sandbox.log_tail()
        return CheckResult(name, False, f"the sandboxed server failed: {exc!r}", evidence)


def run_checks(
    registry: Registry,
    version: ModelVersion,
    policy: DeploymentPolicy,
    holdout: Holdout | None = None,
    *,
    reuse: Sequence[CheckResult] = (),
) -> list[CheckResult]:
    """Run the four checks in order, stopping at the first that fails.

    The sandboxed server is started once and shared by the infra and load checks
    (its start-up is most of their cost); its peak memory once loaded feeds the
    environment check.

    Args:
        registry: the registry holding the version.
        version: the version checked.
        policy: its deployment policy.
        holdout: validated data for the quality check.
        reuse: passed environment, infra and load results of this version under the
            same policy (from the stage before): they stand instead of a new sandbox.
            The quality check always runs (its champion may have changed).
    """
    from conveyor.delivery.sandbox import Sandbox

    if [r.name for r in reuse] == list(CHECK_NAMES[:3]) and all(r.passed for r in reuse):
        results = list(reuse)
        candidate = registry.load_model(version.ref)
        champion = _champion(registry, version.name, policy.gate_alias())
        return [*results, check_quality(candidate, champion, policy, holdout)]
    if package_mismatches(version):
        return [check_environment(version, policy, None)]
    results = []
    example, expected = read_example(registry, version)
    sandbox = Sandbox(registry, version, policy.sandbox)
    try:
        try:
            sandbox.start()
        except ConveyorError as exc:
            env = check_environment(version, policy, None)
            if not env.passed:
                return [env]
            infra = CheckResult("infra", False, str(exc), sandbox.evidence())
            return [env, infra]
        memory = sandbox.memory_mb()
        steps: list[tuple[str, Callable[[], CheckResult]]] = [
            ("environment", lambda: check_environment(version, policy, memory)),
            ("infra", lambda: check_infra(sandbox, example, expected)),
            ("load", lambda: check_load(sandbox, example, policy)),
        ]
        for name, check in steps:
            results.append(_guarded(name, check, sandbox))
            if not results[-1].passed:
                return results
    finally:
        sandbox.stop()
    candidate = registry.load_model(version.ref)
    champion = _champion(registry, version.name, policy.gate_alias())
    results.append(check_quality(candidate, champion, policy, holdout))
    return results
