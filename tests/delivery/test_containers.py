"""The build context and manifests of a real registered version, checked against their rules."""

import json
import re
import shlex

import kubernetes_validate
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.core.registry import Environment
from conveyor.delivery.containers import (
    APP_UID,
    DeploymentSpec,
    Resources,
    base_image,
    kubernetes_manifests,
    requirements,
    write_build_context,
    write_manifests,
)
from conveyor.errors import NotFoundError, ValidationError
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore

K8S_VERSION = "1.30"


@pytest.fixture
def registry(tmp_path):
    models = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
    registry = Registry(models, open_artifact_store(str(tmp_path / "artifacts")))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :5]
    for c in (0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(X, y)
        registry.register_model("flights", model, X.head(3), tags={"team": "ops"})
    registry.set_alias("flights", "production", 2, reason="passed its checks")
    yield registry
    models.close()


# -- Dockerfile rules ----------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        out.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "a continuation line runs off the end"
    return out


def check_dockerfile(text: str, python: str) -> dict[str, list[str]]:
    """The rules hadolint would hold it to that we care about; returns arguments by instruction."""
    steps = instructions(text)
    by: dict[str, list[str]] = {}
    for keyword, rest in steps:
        by.setdefault(keyword, []).append(rest)
    known = {"FROM", "LABEL", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "HEALTHCHECK"}
    assert set(by) <= known | {"ENTRYPOINT", "CMD"}, set(by)
    assert steps[0][0] == "FROM"
    (base,) = by["FROM"]
    assert re.fullmatch(rf"python:{re.escape(python)}-slim", base), "pinned to the lock's Python"
    assert "latest" not in base
    assert "ADD" not in by, "COPY only: no ADD of URLs or archives"
    user_at = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    assert len(user_at) == 1
    assert by["USER"] == [f"{APP_UID}:{APP_UID}"]
    assert not any(k == "RUN" for k, _ in steps[user_at[0] :]), "nothing runs as root after USER"
    assert any(c.startswith("requirements.txt") for c in by["COPY"]), "the lock is copied"
    for command in by["RUN"]:
        if "pip install" in command:
            assert "-r requirements.txt" in command
            assert "--no-cache-dir" in command
    (health,) = by["HEALTHCHECK"]
    assert "/v2/health/ready" in health
    assert json.loads(by["ENTRYPOINT"][0]) == ["conveyor", "serve"]
    assert by["WORKDIR"] == ["/app"]
    return by


def test_the_build_context_holds_a_dockerfile_on_the_locked_python(registry, tmp_path):
    context = write_build_context(registry, "flights@production", tmp_path / "ctx")
    version = registry.resolve("flights/2")
    assert context.version.version == 2
    assert context.serve_ref == "flights@production"
    assert context.image == "conveyor-flights:2"
    by = check_dockerfile((tmp_path / "ctx" / "Dockerfile").read_text(), version.environment.python)
    cmd = json.loads(by["CMD"][0])
    assert cmd == ["flights@production", "--host", "0.0.0.0", "--port", "8080"]
    assert by["EXPOSE"] == ["8080"]
    assert f'dev.conveyor.manifest-sha256="{version.manifest_sha256}"' in by["LABEL"][0]
    for rel in ("requirements.txt", "environment.json", ".dockerignore", "wheels/README"):
        assert rel in context.files
    assert json.loads((tmp_path / "ctx" / "environment.json").read_text()) == (
        version.environment.to_dict()
    )


def test_requirements_pin_every_locked_package_then_the_serving_stack(registry, tmp_path):
    write_build_context(registry, "flights/1", tmp_path / "ctx")
    lines = [
        line
        for line in (tmp_path / "ctx" / "requirements.txt").read_text().splitlines()
        if not line.startswith("#")
    ]
    pins = dict(line.split("==") for line in lines)
    environment = registry.resolve("flights/1").environment
    assert environment.packages  # scikit-learn, skops, pandas, conveyor-mlops…
    for name, version in environment.packages.items():
        assert pins[name] == version
    assert {"uvicorn", "starlette", "sqlalchemy"} <= set(pins)
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line) for line in lines)


def test_the_lock_wins_over_the_versions_installed_here():
    lines = requirements(Environment("3.11.4", {"uvicorn": "0.1.0", "numpy": "1.26.0"}))
    assert "uvicorn==0.1.0" in lines
    assert "numpy==1.26.0" in lines
    assert sum(line.startswith("uvicorn==") for line in lines) == 1


def test_the_copied_store_serves_the_same_version_verified(registry, tmp_path):
    write_build_context(registry, "flights@production", tmp_path / "ctx")
    store = tmp_path / "ctx" / "model" / "store"
    copied = SqlModelStore(f"sqlite:///{store / 'conveyor.db'}")
    try:
        own = Registry(copied, open_artifact_store(str(store / "artifacts")))
        loaded = own.load_model("flights@production")
        original = registry.load_model("flights/2")
        assert loaded.version.manifest_sha256 == original.version.manifest_sha256
        assert loaded.version.tags["conveyor.source_version"] == "2"
        assert loaded.version.tags["team"] == "ops"
        X = original.input_example
        np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
        (event,) = own.history("flights")
        assert event.actor == "conveyor build"
    finally:
        copied.close()
    settings = yaml.safe_load((tmp_path / "ctx" / "model" / "conveyor.yaml").read_text())
    assert settings == {
        "metadata_uri": "sqlite:///store/conveyor.db",
        "artifact_uri": "store/artifacts",
    }


def test_a_version_without_an_alias_is_served_under_its_own(registry, tmp_path):
    context = write_build_context(registry, "flights/1", tmp_path / "ctx", port=9000)
    assert context.serve_ref == "flights@serving"
    text = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert shlex.split(text.splitlines()[-1])[0] == "CMD"
    assert '"--port", "9000"]' in text
    assert "http://127.0.0.1:9000/v2/health/ready" in text


def test_wheels_are_copied_into_the_context(registry, tmp_path):
    wheel = tmp_path / "conveyor_mlops-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04")
    context = write_build_context(registry, "flights/1", tmp_path / "ctx", wheels=[wheel])
    assert "wheels/conveyor_mlops-0.1.0-py3-none-any.whl" in context.files


def test_bad_input_is_refused_before_anything_is_written(registry, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    with pytest.raises(ValidationError, match="not an empty folder"):
        write_build_context(registry, "flights@production", tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]
    with pytest.raises(NotFoundError, match="staging"):
        write_build_context(registry, "flights@staging", tmp_path / "a")
    with pytest.raises(ValidationError, match="wheel"):
        write_build_context(registry, "flights/1", tmp_path / "b", wheels=[tmp_path / "no.whl"])
    with pytest.raises(ValidationError, match="port"):
        write_build_context(registry, "flights/1", tmp_path / "c", port=70000)
    with pytest.raises(ValidationError, match=r"environment\.python"):
        base_image(Environment("3.11", {}))


# -- Kubernetes -------------------------------------------------------------------------


def validate_all(manifests):
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_manifests_meet_the_kubernetes_schema_with_probes_on_the_v2_health(registry):
    version = registry.resolve("flights@production")
    manifests = kubernetes_manifests(
        version, "conveyor-flights:2", DeploymentSpec(), alias="production"
    )
    validate_all(manifests)
    deployment, service, hpa = manifests
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert deployment["metadata"]["name"] == "flights-production"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["securityContext"]["runAsUser"] == APP_UID
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    assert hpa["spec"]["scaleTargetRef"]["name"] == "flights-production"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_a_broken_manifest_would_be_caught_by_the_schema(registry):
    version = registry.resolve("flights/1")
    deployment = kubernetes_manifests(version, "img:1", DeploymentSpec())[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "port"
    ] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_declared_resources_are_what_the_pod_gets(registry, tmp_path):
    # The deployments section of conveyor.yaml, as the delivery policy reads it too.
    declared = {
        "flights": {
            "resources": {"memory_mb": 1536, "cpu": 0.5},
            "slo": {"p99_ms": 100},  # the policy's; not read here
        },
    }
    spec = DeploymentSpec.declared(declared, "flights@production", replicas=3, port=9000)
    assert (spec.replicas, spec.max_replicas, spec.port) == (3, 9, 9000)
    assert spec.resources.requests == spec.resources.limits == {"cpu": "500m", "memory": "1536Mi"}
    assert DeploymentSpec.declared(declared, "other@production") == DeploymentSpec()
    assert DeploymentSpec.declared(None, "flights", replicas=4, port=None).replicas == 4
    whole = Resources.declared({"cpu": 2})
    assert whole.requests == {"cpu": "2", "memory": "512Mi"}
    version = registry.resolve("flights/1")
    manifests = kubernetes_manifests(version, "img:1", spec, alias="production")
    validate_all(manifests)
    written = write_manifests(manifests, tmp_path / "k8s")
    names = [p.name for p in written]
    assert names == ["deployment.yaml", "service.yaml", "horizontalpodautoscaler.yaml"]
    assert yaml.safe_load(written[0].read_text()) == manifests[0]


@pytest.mark.parametrize(
    ("declared", "overrides", "field"),
    [
        ({}, {"replicas": 0}, "replicas"),
        ({}, {"replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({}, {"port": 0}, "port"),
        ({"flights": {"resources": {"cpu": "lots"}}}, {}, "deployments.flights.resources.cpu"),
        ({"flights": {"resources": {"memory_mb": -1}}}, {}, "resources.memory_mb"),
        ({"flights": {"resources": {"gpu": 1}}}, {}, "deployments.flights.resources.gpu"),
        ({"flights": {"resources": True}}, {}, "deployments.flights.resources"),
        ({"flights": []}, {}, "deployments.flights"),
        (["flights"], {}, "deployments"),
    ],
)
def test_a_bad_declaration_names_its_key(declared, overrides, field):
    with pytest.raises(ValidationError) as caught:
        DeploymentSpec.declared(declared, "flights@production", **overrides)
    assert field in str(caught.value)


def test_names_become_valid_kubernetes_names(registry):
    version = registry.resolve("flights/1")
    manifests = kubernetes_manifests(version, "img:1", DeploymentSpec())
    assert manifests[0]["metadata"]["name"] == "flights-v1"
    validate_all(manifests)
