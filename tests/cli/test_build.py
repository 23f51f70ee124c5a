"""`conveyor build` and `conveyor k8s` in a real project; the built context serves the version."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import kubernetes_validate
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conftest import run_cli
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore


@pytest.fixture
def shop(tmp_path):
    """A project with flights/1 and flights/2, production at 2, and a deployment declaration."""
    state = tmp_path / ".conveyor"
    models = SqlModelStore(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(models, open_artifact_store(str(state / "artifacts")))
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    for c in (0.1, 1.0):
        registry.register_model(
            "flights", LogisticRegression(C=c, max_iter=2000).fit(X, y), X.head(3)
        )
    registry.set_alias("flights", "production", 2, reason="checks passed")
    models.close()
    (tmp_path / "conveyor.yaml").write_text(
        "experiment: shop\ndeployments:\n  flights:\n    resources: {memory_mb: 1024, cpu: 2}\n"
    )
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_writes_a_context_whose_entrypoint_serves_the_version(shop):
    done = run_cli(shop, "build", "flights@production", "--output", "ctx")
    assert "conveyor-flights:2" in done.stdout
    dockerfile = (shop / "ctx" / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    # Run what the image runs, from the context's own store: ENTRYPOINT + CMD, another port.
    cmd = json.loads(dockerfile.strip().splitlines()[-1].removeprefix("CMD "))
    assert cmd[0] == "flights@production"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", cmd[0], "--port", str(port)],
        cwd=shop / "ctx" / "model", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        with urllib.request.urlopen(f"{url}/v2/models/flights", timeout=5) as answer:
            meta = json.loads(answer.read())
        assert meta["name"] == "flights"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_k8s_writes_valid_manifests_from_the_declaration_and_options(shop):
    done = run_cli(shop, "k8s", "flights@production", "--replicas", "3", "-o", "k8s")
    assert "HorizontalPodAutoscaler" in done.stdout
    assert "kubectl apply -f k8s" in done.stdout
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (shop / "k8s").glob("*.yaml")}
    assert set(docs) == {"deployment", "service", "horizontalpodautoscaler"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.30", strict=True)
    deployment = docs["deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "conveyor-flights:2"
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "1024Mi"}
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert docs["horizontalpodautoscaler"]["spec"]["minReplicas"] == 3


def test_default_folders_and_an_image_option(shop):
    run_cli(shop, "build", "flights/1")
    assert (shop / "build" / "flights-v1" / "Dockerfile").is_file()
    run_cli(shop, "k8s", "flights/1", "--image", "registry.example/flights:1")
    deployment = yaml.safe_load((shop / "k8s" / "flights-v1" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/flights:1"
    )


def test_bad_input_is_one_red_line(shop):
    done = run_cli(shop, "build", "flights@staging", ok=False)
    assert done.returncode == 1
    assert "staging" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli(shop, "k8s", "flights@production", "--replicas", "0", ok=False)
    assert done.returncode == 1
    assert "replicas" in done.stderr
    (shop / "conveyor.yaml").write_text("deployments:\n  flights:\n    resources: {cpu: lots}\n")
    done = run_cli(shop, "k8s", "flights", ok=False)
    assert "deployments.flights.resources.cpu" in done.stderr
    assert "Traceback" not in done.stderr
