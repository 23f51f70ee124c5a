"""Dev/prod parity: a model version as a Docker build context and Kubernetes manifests.

`write_build_context` turns a registered version into a folder ``docker build``
takes: a Dockerfile on the version's own Python (``python:<x.y.z>-slim``), a
``requirements.txt`` pinning the exact package versions of its environment lock
(and the serving stack at the versions that built it), and the model package
copied into a small store of its own, verified on the way, that ``conveyor serve``
reads. The image runs as a non-root user and checks its health on
``/v2/health/ready``.

`kubernetes_manifests` gives the Deployment (readiness, liveness and startup
probes on the Open Inference V2 health endpoints, resources from the deployment's
declaration), the Service and the HorizontalPodAutoscaler for that image.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.registry import Environment, ModelRef, ModelVersion
from conveyor.errors import ValidationError

if TYPE_CHECKING:
    from conveyor.registry import Registry

__all__ = [
    "APP_UID",
    "BuildContext",
    "DeploymentSpec",
    "Resources",
    "dockerfile",
    "kubernetes_manifests",
    "requirements",
    "write_build_context",
    "write_manifests",
]

APP_UID = 10001
DEFAULT_PORT = 8080
READY = "/v2/health/ready"
LIVE = "/v2/health/live"
# What `conveyor serve` needs beside the model's own packages, from conveyor's metadata.
_SERVE_PACKAGES = ("starlette", "uvicorn", "orjson")
_PYTHON = re.compile(r"\d+\.\d+\.\d+")
_DNS = re.compile(r"[^a-z0-9-]+")


# -- the deployment's declaration -------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """CPU and memory for one replica, as Kubernetes quantities (``500m``, ``1Gi``).

    Attributes:
        requests: what the scheduler reserves (``cpu``, ``memory``).
        limits: the most the container may use (``cpu``, ``memory``).
    """

    requests: Mapping[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "512Mi"})
    limits: Mapping[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "1Gi"})

    @classmethod
    def declared(cls, data: Any, where: str = "resources") -> Resources:
        """Resources from the deployment's declaration, ``{memory_mb: 512, cpu: 1}``.

        The same keys the CD checks hold a version to (`conveyor.delivery.policy`); the
        pod gets exactly that (requests = limits), so what was checked is what runs.

        Raises:
            ValidationError: naming the key that is unknown or not a positive number.
        """
        if not isinstance(data, Mapping):
            raise ValidationError(where, "must be a mapping with memory_mb and cpu")
        _known(data, where, ("memory_mb", "cpu"))
        amounts: dict[str, str] = {}
        for key, unit in (("cpu", ""), ("memory_mb", "Mi")):
            if key not in data:
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValidationError(f"{where}.{key}", f"must be a positive number, got {value!r}")
            name = "memory" if key == "memory_mb" else "cpu"
            amounts[name] = _quantity(value, unit)
        default = cls()
        return cls({**default.requests, **amounts}, {**default.limits, **amounts})


def _quantity(value: float, unit: str) -> str:
    if unit == "Mi":
        return f"{math.ceil(value)}Mi"
    millis = math.ceil(value * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


@dataclass(frozen=True)
class DeploymentSpec:
    """How a served model runs: replicas, autoscaling, port and resources.

    Attributes:
        replicas: replicas to start with (the autoscaler's minimum).
        max_replicas: the autoscaler's maximum.
        target_cpu: the average CPU utilisation (percent of requests) the autoscaler keeps.
        port: the port the server listens on in the container.
        resources: CPU and memory of each replica.
    """

    replicas: int = 2
    max_replicas: int = 6
    target_cpu: int = 70
    port: int = DEFAULT_PORT
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        _whole("replicas", self.replicas, 1)
        _whole("max_replicas", self.max_replicas, self.replicas)
        _whole("target_cpu", self.target_cpu, 1, 100)
        _whole("port", self.port, 1, 65535)

    @classmethod
    def declared(cls, deployments: Any, ref: str, **overrides: Any) -> DeploymentSpec:
        """The spec for ``ref``: resources from conveyor.yaml's ``deployments`` section.

        Only ``deployments.<model>.resources`` is read here (``memory_mb``, ``cpu``); the
        other keys are the delivery policy's. Replicas, autoscaling and the port come
        from ``overrides`` (those that are not None).

        Raises:
            ValidationError: naming the key that is not a mapping or not a valid amount.
        """
        name = ModelRef.parse(ref).name
        section = deployments if deployments is not None else {}
        if not isinstance(section, Mapping):
            raise ValidationError("deployments", "must map model names to their policy")
        data = section.get(name)
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ValidationError(f"deployments.{name}", "must be a mapping")
        values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        if "resources" in data:
            values["resources"] = Resources.declared(
                data["resources"], f"deployments.{name}.resources"
            )
        if "max_replicas" not in values:
            values["max_replicas"] = max(cls.max_replicas, 3 * values.get("replicas", 2))
        return cls(**values)


def _known(data: Mapping[str, Any], where: str, keys: Sequence[str]) -> None:
    for key in data:
        if key not in keys:
            raise ValidationError(
                f"{where}.{key}", f"unknown key; expected one of {', '.join(keys)}"
            )


def _whole(name: str, value: Any, low: int, high: int | None = None) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int) or value < low
    if bad or (high is not None and value > high):
        span = f"from {low}" + (f" to {high}" if high is not None else "")
        raise ValidationError(name, f"must be a whole number {span}, got {value!r}")


# -- the build context ---------------------------------------------------------------


@dataclass(frozen=True)
class BuildContext:
    """A folder ``docker build`` takes, for one model version.

    Attributes:
        folder: the context's root (``Dockerfile`` at its top).
        ref: what was asked for (``flights@production``).
        version: the version built (its number in the source registry).
        serve_ref: what the image serves from its own store (``flights@production``).
        image: the suggested image name and tag.
        files: every file written, relative to ``folder``.
    """

    folder: Path
    ref: str
    version: ModelVersion
    serve_ref: str
    image: str
    files: list[str]


def base_image(environment: Environment) -> str:
    """The official slim Python image of the version's exact Python (``python:3.11.9-slim``).

    Raises:
        ValidationError: the lock records no full Python version.
    """
    if not _PYTHON.fullmatch(environment.python):
        raise ValidationError(
            "environment.python",
            f"must be a full version such as 3.11.9, got {environment.python!r}",
        )
    return f"python:{environment.python}-slim"


def requirements(environment: Environment) -> list[str]:
    """``name==version`` lines: the version's lock, then what serving needs at the versions here.

    The lock wins for every package it names; conveyor's own requirements and the
    serving stack are pinned to the versions installed where the image is built.
    """
    pinned = dict(environment.packages)
    extra: dict[str, str] = {}
    for name in (*_conveyor_requirements(), *_SERVE_PACKAGES):
        if name not in pinned and name not in extra:
            version = _installed(name)
            if version is not None:
                extra[name] = version
    lines = [f"{name}=={version}" for name, version in sorted(pinned.items())]
    return lines + [f"{name}=={version}" for name, version in sorted(extra.items())]


def _conveyor_requirements() -> list[str]:
    try:
        declared = importlib.metadata.requires("conveyor-mlops") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = []
    for line in declared:
        if "extra ==" in line:
            continue
        names.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].strip())
    return names


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dockerfile(
    version: ModelVersion, serve_ref: str, *, port: int = DEFAULT_PORT, source_ref: str = ""
) -> str:
    """The Dockerfile text for ``version``, serving ``serve_ref`` from the copied store."""
    image = base_image(version.environment)
    labels = {
        "org.opencontainers.image.title": f"conveyor-{version.name}",
        "org.opencontainers.image.version": str(version.version),
        "dev.conveyor.model": version.name,
        "dev.conveyor.version": str(version.version),
        "dev.conveyor.manifest-sha256": version.manifest_sha256,
    }
    label_lines = " \\\n      ".join(f'{key}="{value}"' for key, value in labels.items())
    health = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{READY}', "
        "timeout=2)"
    )
    return f"""\
# syntax=docker/dockerfile:1
# Written by `conveyor build {source_ref or serve_ref}`: version {version.version} of \
{version.name}, on the Python and package versions of its environment lock.
FROM {image}

LABEL {label_lines}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid {APP_UID} conveyor \\
 && useradd --system --uid {APP_UID} --gid conveyor --home-dir /app --shell /usr/sbin/nologin \
conveyor

WORKDIR /app
COPY requirements.txt environment.json ./
COPY wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --find-links /tmp/wheels -r requirements.txt \\
 && rm -rf /tmp/wheels

COPY --chown={APP_UID}:{APP_UID} model/ /app/

USER {APP_UID}:{APP_UID}
EXPOSE {port}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
  CMD ["python", "-c", "{health}"]
ENTRYPOINT ["conveyor", "serve"]
CMD ["{serve_ref}", "--host", "0.0.0.0", "--port", "{port}"]
"""


def write_build_context(
    registry: Registry,
    ref: str,
    output: str | Path,
    *,
    port: int = DEFAULT_PORT,
    wheels: Sequence[str | Path] = (),
) -> BuildContext:
    """Write the Docker build context for the version ``ref`` names into ``output``.

    Args:
        registry: where the version is read from.
        ref: ``name@alias``, ``name/3`` or ``name``.
        output: the context folder (created; must be empty if it exists).
        port: the port the server listens on.
        wheels: wheel files to install from (conveyor's own, when it is on no index
            the build can reach); copied into ``wheels/``.

    Raises:
        NotFoundError: the model, version or alias does not exist.
        ValidationError: ``output`` is not empty, a wheel is missing, or the lock is unusable.
        ArtifactCorruptedError: a package file no longer matches its sha256.
    """
    folder = _empty_folder(output)
    _whole("port", port, 1, 65535)
    parsed = ModelRef.parse(ref)
    version = registry.resolve(ref)
    base_image(version.environment)  # refuse a lock with no Python version before writing
    alias = parsed.alias or "serving"
    serve_ref = f"{version.name}@{alias}"
    _copy_package(registry, version, ref, alias, folder / "model")
    (folder / "requirements.txt").write_text(
        "# The model's environment lock, then the serving stack; written by conveyor build.\n"
        + "\n".join(requirements(version.environment))
        + "\n",
        encoding="utf-8",
    )
    (folder / "environment.json").write_text(
        json.dumps(version.environment.to_dict(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    _copy_wheels(wheels, folder / "wheels")
    (folder / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n", encoding="utf-8")
    (folder / "Dockerfile").write_text(
        dockerfile(version, serve_ref, port=port, source_ref=ref), encoding="utf-8"
    )
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    image = f"conveyor-{_dns(version.name)}:{version.version}"
    return BuildContext(folder, ref, version, serve_ref, image, files)


def _empty_folder(output: str | Path) -> Path:
    folder = Path(output)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValidationError("output", f"{folder} exists and is not an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _copy_wheels(wheels: Sequence[str | Path], target: Path) -> None:
    target.mkdir()
    (target / "README").write_text(
        "Wheels pip may install from (conveyor-mlops's, if your index does not have it).\n",
        encoding="utf-8",
    )
    for wheel in wheels:
        path = Path(wheel)
        if not path.is_file() or path.suffix != ".whl":
            raise ValidationError("wheel", f"{path} is not a wheel file (*.whl)")
        shutil.copy2(path, target / path.name)


def _copy_package(
    registry: Registry, version: ModelVersion, ref: str, alias: str, folder: Path
) -> None:
    """Record the version in a store of the image's own and verify it loads from there."""
    from conveyor.registry import Registry as _Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store
    from conveyor.stores.metadata.models import NewModelVersion

    folder.mkdir()
    (folder / "conveyor.yaml").write_text(
        "# The image's own store: the one model version it serves.\n"
        "metadata_uri: sqlite:///store/conveyor.db\n"
        "artifact_uri: store/artifacts\n",
        encoding="utf-8",
    )
    artifacts = open_artifact_store(str(folder / "store" / "artifacts"))
    digests = [version.manifest_sha256, *version.files.values()]
    if version.profile_sha256 is not None:
        digests.append(version.profile_sha256)
    for sha in dict.fromkeys(digests):
        artifacts.put_bytes(registry.artifacts.get_bytes(sha))
    models = open_model_store(f"sqlite:///{folder / 'store' / 'conveyor.db'}")
    try:
        own = _Registry(models, artifacts)
        tags = {**version.tags, "conveyor.source_ref": ref}
        tags["conveyor.source_version"] = str(version.version)
        recorded = models.create_version(
            NewModelVersion(
                name=version.name,
                format=version.format,
                manifest_sha256=version.manifest_sha256,
                signature=version.signature,
                environment=version.environment,
                files=version.files,
                trusted=version.trusted,
                run_id=version.run_id,
                description=version.description,
                tags=tags,
                metrics=version.metrics,
                source=version.source,
                data_digests=version.data_digests,
                profile_sha256=version.profile_sha256,
            )
        )
        own.set_alias(version.name, alias, recorded.version, f"built from {ref}", "conveyor build")
        own.load_model(f"{version.name}@{alias}")  # every hash verified in its new home
    finally:
        models.close()


# -- Kubernetes ----------------------------------------------------------------------


def kubernetes_manifests(
    version: ModelVersion, image: str, spec: DeploymentSpec, *, alias: str | None = None
) -> list[dict[str, Any]]:
    """The Deployment, Service and HorizontalPodAutoscaler that serve ``image``.

    Args:
        version: the version the image holds (named in labels and annotations).
        image: the image built from `write_build_context`'s folder.
        spec: replicas, autoscaling, port and resources.
        alias: the alias served (part of the objects' names).
    """
    name = _dns(f"{version.name}-{alias}" if alias else f"{version.name}-v{version.version}")
    selector = {"app.kubernetes.io/name": _dns(version.name), "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/version": str(version.version),
    }
    meta = {
        "name": name,
        "labels": labels,
        "annotations": {"conveyor.dev/manifest-sha256": version.manifest_sha256},
    }
    return [
        _deployment(meta, selector, image, spec),
        _service(meta, selector, spec),
        _autoscaler(meta, spec),
    ]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _deployment(
    meta: dict[str, Any], selector: dict[str, str], image: str, spec: DeploymentSpec
) -> dict[str, Any]:
    container = {
        "name": "model-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": _probe(READY, 5, 3),
        "livenessProbe": _probe(LIVE, 10, 3),
        "startupProbe": _probe(LIVE, 2, 60),  # loading a big model may take two minutes
        "resources": {
            "requests": dict(spec.resources.requests),
            "limits": dict(spec.resources.limits),
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # Zero failed requests on a rollout: a new pod serves before an old one stops.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "fsGroup": APP_UID},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    }


def _service(
    meta: dict[str, Any], selector: dict[str, str], spec: DeploymentSpec
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(meta: dict[str, Any], spec: DeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
            "minReplicas": spec.replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": spec.target_cpu},
                    },
                }
            ],
        },
    }


def write_manifests(manifests: Sequence[Mapping[str, Any]], output: str | Path) -> list[Path]:
    """Write each manifest as ``<kind>.yaml`` (lower case) into ``output``; the paths written.

    Raises:
        ValidationError: ``output`` exists and is not a folder.
    """
    import yaml

    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ValidationError("output", f"{folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for manifest in manifests:
        path = folder / f"{str(manifest['kind']).lower()}.yaml"
        path.write_text(yaml.safe_dump(dict(manifest), sort_keys=False), encoding="utf-8")
        written.append(path)
    return written


def _dns(text: str) -> str:
    """A Kubernetes object name (RFC 1123 label): lower case, digits and dashes, ≤ 63."""
    name = _DNS.sub("-", text.lower()).strip("-")[:63].rstrip("-")
    return name or "model"
