"""The Helm chart (helm/vision), rendered by the real Helm engine (helm-python-sdk embeds Helm's
Go SDK): lint, every ci/*-values.yaml scenario validated against the Kubernetes schemas, and
assertions on the rendered objects. No cluster needed."""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_chart import CHART, NAMESPACE, RELEASE, Manifests, one, render

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.30.0"  # oldest Kubernetes these manifests must validate against
KUBE_LATEST = "1.33.0"
# Kinds with no schema in kubernetes-validate (CRDs): their fields are checked by hand below.
CRD_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def scenario_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text()) or {}
    assert isinstance(values, dict)
    return values


def kinds(objects: Manifests) -> set[str]:
    return {kind for kind, _ in objects}


def container(objects: Manifests) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["vision"]
    result: dict[str, Any] = containers[0]
    return result


def env_var(c: dict[str, Any], name: str) -> dict[str, Any]:
    found = [e for e in c.get("env", []) if e["name"] == name]
    assert len(found) == 1, f"{name} not in the container's env"
    result: dict[str, Any] = found[0]
    return result


def config_data(objects: Manifests) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap")["data"]
    return data


def without_meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "_template"}


def drain_seconds(config: dict[str, str], pre_stop: float) -> float:
    return (
        pre_stop + float(config["VISION_GRPC_GRACE_S"]) + float(config["VISION_REQUEST_TIMEOUT_S"])
    )


# ----------------------------------------------------------------------------- every scenario


def test_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    assert {
        "default-values.yaml",
        "gpu-values.yaml",
        "autoscaling-postgres-values.yaml",
        "servicemonitor-values.yaml",
    } <= names


@pytest.fixture(scope="module", params=SCENARIOS, ids=[p.stem for p in SCENARIOS])
def scenario(request: pytest.FixtureRequest, chart: Any) -> tuple[dict[str, Any], Manifests]:
    values = scenario_values(request.param)
    return values, render(chart, values)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_lint(path: Path) -> None:
    report = helm.lint(CHART, scenario_values(path), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_lint_with_default_values() -> None:
    report = helm.lint(CHART, strict=True)
    assert not report["errors"]
    assert not [m for m in report["messages"] if m["severity"] >= 2], report


@pytest.mark.parametrize("version", [KUBE_VERSION, KUBE_LATEST])
def test_manifests_validate_against_kubernetes_schema(
    scenario: tuple[dict[str, Any], Manifests], version: str
) -> None:
    _, objects = scenario
    validated = 0
    for (kind, name), obj in objects.items():
        if kind == "NOTES" or kind in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(without_meta(obj), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind}/{name} ({obj['_template']}) is invalid for {version}: {exc}")
        validated += 1
    assert validated >= 7  # ConfigMap, Deployment, Service, PDB, ServiceAccount, test Pod, ...


def nulls(node: Any, path: str = "") -> list[str]:
    """Paths of null values: a template emitted a key with nothing under it."""
    if node is None:
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in nulls(v, f"{path}[{i}]")]
    return []


def test_no_null_fields(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    for (kind, name), obj in objects.items():
        assert not nulls(obj), f"{kind}/{name} has null fields: {nulls(obj)}"


def test_standard_labels_and_namespace(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    for (kind, name), obj in objects.items():
        if kind == "NOTES":
            continue
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert labels.get(key), f"{kind}/{name} lacks label {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_selectors_match_pod_labels(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    # The selector must not carry the version: it is immutable across upgrades.
    assert "app.kubernetes.io/version" not in selector
    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    if "PodDisruptionBudget" in kinds(objects):
        assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    if "HorizontalPodAutoscaler" in kinds(objects):
        ref = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        }
    if "ServiceMonitor" in kinds(objects):
        sm = one(objects, "ServiceMonitor")["spec"]
        assert sm["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_probes(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    c = container(objects)
    ports = {p["name"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "http" in ports
    startup = c["startupProbe"]
    # Loading and warming the models takes a while: the startup probe allows minutes, and the
    # liveness probe (gated by it) never kills a pod that is still loading.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_ports_follow_the_settings(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    config = config_data(objects)
    http, grpc = int(config["VISION_HTTP_PORT"]), int(config["VISION_GRPC_PORT"])
    c = container(objects)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": http, "grpc": grpc}
    assert {"configMapRef": {"name": one(objects, "ConfigMap")["metadata"]["name"]}} in c["envFrom"]
    service_ports = {p["name"]: p for p in one(objects, "Service")["spec"]["ports"]}
    assert service_ports["http"]["port"] == http and service_ports["http"]["targetPort"] == "http"
    assert service_ports["grpc"]["port"] == grpc and service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["grpc"]["appProtocol"] == "grpc"
    assert f":{http}" in one(objects, "Pod")["spec"]["containers"][0]["args"][0]
    notes = objects[("NOTES", "")]["text"]
    assert f"port-forward svc/{one(objects, 'Service')['metadata']['name']}" in notes
    assert f"{http}:{http}" in notes and f"{grpc}:{grpc}" in notes


def test_security_context(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    sc = container(objects)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # Writable places under the read-only root: /tmp, BentoML's Prometheus dir, /data.
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/opt/bentoml/prometheus_multiproc_dir"]]
    assert "/data" in mounts
    assert config_data(objects)["VISION_DATA_DIR"] == "/data"


def test_termination_grace_exceeds_drain(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = drain_seconds(config_data(objects), float(command[1]))
    assert pod["terminationGracePeriodSeconds"] > drain


def test_api_key_comes_from_a_secret(scenario: tuple[dict[str, Any], Manifests]) -> None:
    values, objects = scenario
    ref = env_var(container(objects), "VISION_API_KEY")["valueFrom"]["secretKeyRef"]
    existing = values.get("apiKey", {}).get("existingSecret")
    if existing:
        assert ref["name"] == existing
        assert ref["key"] == values["apiKey"]["existingSecretKey"]
    else:
        secret = objects[("Secret", ref["name"])]
        assert base64.b64decode(secret["data"][ref["key"]]).decode()
    # Never in the ConfigMap.
    assert not any(k in config_data(objects) for k in ("VISION_API_KEY", "VISION_GALLERY_URL"))


def test_helm_test_pod(scenario: tuple[dict[str, Any], Manifests]) -> None:
    _, objects = scenario
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = " ".join(pod["spec"]["containers"][0]["args"])
    service = one(objects, "Service")["metadata"]["name"]
    assert f"http://{service}.{NAMESPACE}.svc:" in script
    assert "/readyz" in script and "/v1/models" in script
    assert pod["spec"]["restartPolicy"] == "Never"


# ----------------------------------------------------------------------------- per scenario


def test_default_scenario(chart: Any) -> None:
    objects = render(chart, scenario_values(CHART / "ci" / "default-values.yaml"))
    assert "HorizontalPodAutoscaler" not in kinds(objects)
    assert "ServiceMonitor" not in kinds(objects)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    # CPU: no GPU anywhere.
    for section in ("limits", "requests"):
        assert "nvidia.com/gpu" not in c["resources"].get(section, {})
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "runtimeClassName" not in pod
    assert config_data(objects)["VISION_DEVICE"] == "auto"
    # SQLite: one replica, a PVC at /data, no rolling overlap on the volume.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pvc = one(objects, "PersistentVolumeClaim")
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "VISION_GALLERY_URL" not in {e["name"] for e in c["env"]}
    # The Secret holds the API key given in the values.
    ref = env_var(c, "VISION_API_KEY")["valueFrom"]["secretKeyRef"]
    secret = objects[("Secret", ref["name"])]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "ci-default-key"
    # Settings land in the ConfigMap with their exact values (no float formatting).
    config = config_data(objects)
    assert config["VISION_MAX_BODY_BYTES"] == "20971520"
    assert config["VISION_MAX_PIXELS"] == "40000000"
    assert config["VISION_GALLERY_SYNC_S"] == "0.5"
    assert config["VISION_BATCHING"] == "true"
    assert all(isinstance(v, str) for v in config.values())
    assert pod["terminationGracePeriodSeconds"] == 5 + 5 + 60 + 10


def test_gpu_scenario(chart: Any) -> None:
    values = scenario_values(CHART / "ci" / "gpu-values.yaml")
    objects = render(chart, values)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # The rest of the resources are the scenario's, untouched by the GPU toggle.
    assert c["resources"]["requests"]["memory"] == "8Gi"
    assert c["resources"]["limits"]["memory"] == "16Gi"
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert pod["nodeSelector"]["topology.kubernetes.io/zone"] == "zone-a"  # merged, not replaced
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["runtimeClassName"] == "nvidia"
    assert config_data(objects)["VISION_DEVICE"] == "cuda"
    assert config_data(objects)["VISION_MAX_BATCH_SIZE"] == "128"
    assert c["image"] == "registry.example.com/vision:0.1.0-gpu"
    # Two GPUs per pod.
    more = copy.deepcopy(values)
    more["gpu"]["count"] = 2
    c2 = container(render(chart, more))
    assert c2["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_autoscaling_postgres_scenario(chart: Any) -> None:
    values = scenario_values(CHART / "ci" / "autoscaling-postgres-values.yaml")
    objects = render(chart, values)
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    c = container(objects)
    ref = env_var(c, "VISION_GALLERY_URL")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "vision-postgres", "key": "dsn"}
    assert "PersistentVolumeClaim" not in kinds(objects)
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert not any("persistentVolumeClaim" in v for v in volumes)
    # Both secrets are external: the chart makes none.
    assert "Secret" not in kinds(objects)
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Resource"]["resource"]["target"]["averageUtilization"] == 75
    pods = metrics["Pods"]["pods"]
    assert pods["metric"]["name"] == "bentoml_service_request_in_progress"
    assert pods["target"] == {"type": "AverageValue", "averageValue": "32"}
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1 and "maxUnavailable" not in pdb


def test_postgres_dsn_in_the_charts_own_secret(chart: Any) -> None:
    dsn = "postgresql://vision:pw@db.example:5432/vision"
    objects = render(
        chart,
        {"replicaCount": 3, "gallery": {"postgres": {"enabled": True, "url": dsn}}},
    )
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    ref = env_var(container(objects), "VISION_GALLERY_URL")["valueFrom"]["secretKeyRef"]
    secret = objects[("Secret", ref["name"])]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == dsn
    assert "PersistentVolumeClaim" not in kinds(objects)
    # The generated API key sits in the same Secret.
    key_ref = env_var(container(objects), "VISION_API_KEY")["valueFrom"]["secretKeyRef"]
    assert key_ref["name"] == ref["name"]
    assert len(base64.b64decode(secret["data"][key_ref["key"]])) >= 32


def test_servicemonitor_scenario(chart: Any) -> None:
    objects = render(chart, scenario_values(CHART / "ci" / "servicemonitor-values.yaml"))
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    service_ports = {p["name"] for p in one(objects, "Service")["spec"]["ports"]}
    assert endpoint["port"] in service_ports
    assert one(objects, "Service")["spec"]["type"] == "LoadBalancer"
    config = config_data(objects)
    assert (config["VISION_HTTP_PORT"], config["VISION_GRPC_PORT"]) == ("8080", "9090")


def test_ports_change_together(chart: Any) -> None:
    objects = render(chart, {"config": {"httpPort": 8000, "grpcPort": 8001}})
    config = config_data(objects)
    assert (config["VISION_HTTP_PORT"], config["VISION_GRPC_PORT"]) == ("8000", "8001")
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    service = {p["name"]: p["port"] for p in one(objects, "Service")["spec"]["ports"]}
    assert service == {"http": 8000, "grpc": 8001}


def test_termination_grace_follows_the_timeouts(chart: Any) -> None:
    objects = render(chart, {"config": {"requestTimeoutS": 120, "grpcGraceS": 12.5}})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + math.ceil(12.5) + 120 + 10
    assert config_data(objects)["VISION_GRPC_GRACE_S"] == "12.5"
    explicit = render(chart, {"terminationGracePeriodSeconds": 300})
    assert (
        one(explicit, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == 300
    )


def test_servicemonitor_only_when_enabled(chart: Any) -> None:
    assert "ServiceMonitor" not in kinds(render(chart))
    assert "ServiceMonitor" in kinds(render(chart, {"serviceMonitor": {"enabled": True}}))


def test_existing_api_key_secret_and_no_key(chart: Any) -> None:
    objects = render(chart, {"apiKey": {"existingSecret": "keys", "existingSecretKey": "k"}})
    ref = env_var(container(objects), "VISION_API_KEY")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "keys", "key": "k"}
    assert "Secret" not in kinds(objects)
    objects = render(chart, {"apiKey": {"enabled": False}})
    kubernetes_validate.validate(
        without_meta(one(objects, "Deployment")), KUBE_VERSION, strict=True
    )
    assert "VISION_API_KEY" not in {e["name"] for e in container(objects).get("env", [])}


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount=2 with the SQLite gallery"),
        (
            {"autoscaling": {"enabled": True, "maxReplicas": 3}},
            "autoscaling.maxReplicas=3 with the SQLite gallery",
        ),
        ({"gallery": {"postgres": {"enabled": True}}}, "needs gallery.postgres.url"),
        ({"terminationGracePeriodSeconds": 30}, "must exceed the drain time"),
        (
            {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}},
            "minAvailable or maxUnavailable, not both",
        ),
        ({"config": {"httpPort": 9000, "grpcPort": 9000}}, "must differ"),
    ],
    ids=["replicas", "autoscaling", "postgres-without-dsn", "grace", "pdb", "same-ports"],
)
def test_chart_refuses(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_sqlite_refusal_explains_the_fix(chart: Any) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        chart.render(values={"replicaCount": 2}, name=RELEASE)
    assert "gallery.postgres.enabled=true" in str(info.value)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"gpu": {"enabled": "yes"}}, "/gpu/enabled"),
        ({"gpu": {"count": "1"}}, "/gpu/count"),
        ({"gpu": {"enabled": True, "vendor": "nvidia"}}, "vendor"),
        ({"config": {"device": "tpu"}}, "/config/device"),
        ({"config": {"apiKey": "in-a-configmap"}}, "apiKey"),
        ({"config": {"httpPort": 70000}}, "/config/httpPort"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"service": {"type": "Ingress"}}, "/service/type"),
        ({"gallery": {"postgres": {"url": "mysql://x"}}}, "/gallery/postgres/url"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"unknownTopLevel": 1}, "unknownTopLevel"),
    ],
)
def test_schema_rejects(chart: Any, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        chart.render(values=values, name=RELEASE)
    report = helm.lint(CHART, values)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_schema_accepts_every_scenario(chart: Any) -> None:
    for path in SCENARIOS:
        chart.validate_schema(chart.merge_values(scenario_values(path)))


# Values the ci scenarios do not use: every combination renders, has no nulls, and validates.
OTHER_VALUES: list[dict[str, Any]] = [
    {"apiKey": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
    {
        "gallery": {"persistence": {"enabled": False}},
        "serviceAccount": {"create": False},
        "lifecycle": {"preStopSleepSeconds": 0},
    },
    {
        "gallery": {"persistence": {"existingClaim": "old-gallery"}},
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
    },
    {
        "gallery": {"persistence": {"storageClass": "-", "size": "10Gi"}},
        "service": {"type": "NodePort", "nodePorts": {"http": 30080, "grpc": 30051}},
        "tmpVolume": {"medium": "Memory", "sizeLimit": "512Mi"},
    },
    {
        "gpu": {"enabled": True, "count": 2},
        "gallery": {"postgres": {"enabled": True, "url": "postgresql://u:p@db/vision"}},
        "autoscaling": {
            "enabled": True,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": None,
            "targetMemoryUtilizationPercentage": 80,
            "customMetric": {"name": "inflight", "averageValue": 10},
        },
        "serviceMonitor": {"enabled": True, "namespace": "monitoring"},
        "extraEnv": [{"name": "LOG_LEVEL", "value": "debug"}],
        "extraVolumes": [{"name": "certs", "secret": {"secretName": "grpc-tls"}}],
        "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
        "config": {"grpcTlsCert": "/certs/tls.crt", "grpcTlsKey": "/certs/tls.key"},
        "podDisruptionBudget": {"minAvailable": "50%", "maxUnavailable": None},
        "nameOverride": "vis",
    },
]


@pytest.mark.parametrize("values", OTHER_VALUES, ids=range(len(OTHER_VALUES)))
def test_other_values_render_and_validate(chart: Any, values: dict[str, Any]) -> None:
    objects = render(chart, values)
    for (kind, name), obj in objects.items():
        if kind == "NOTES":
            continue
        assert not nulls(obj), f"{kind}/{name} has null fields: {nulls(obj)}"
        if kind not in CRD_KINDS:
            kubernetes_validate.validate(without_meta(obj), KUBE_VERSION, strict=True)
    assert not helm.lint(CHART, values, strict=True)["errors"]
    c = container(objects)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pvc = "PersistentVolumeClaim" in kinds(objects)
    sqlite = not values.get("gallery", {}).get("postgres", {}).get("enabled", False)
    persistence = values.get("gallery", {}).get("persistence", {})
    assert pvc == (
        sqlite and persistence.get("enabled", True) and not persistence.get("existingClaim")
    )


def test_every_setting_reaches_the_container(chart: Any) -> None:
    """Each VISION_* setting of the service can be set through the chart: the ConfigMap, or
    a Secret for the API key and the PostgreSQL DSN. The model store is baked in the image, so
    its settings (where it is, whether `vision serve` skips invalid packages and which it
    skipped) have no place in the chart."""
    from service.settings import Settings

    objects = render(chart, scenario_values(CHART / "ci" / "autoscaling-postgres-values.yaml"))
    names = set(config_data(objects)) | {e["name"] for e in container(objects)["env"]}
    store = {"VISION_MODEL_STORE", "VISION_SKIP_INVALID_MODELS", "VISION_INVALID_MODELS"}
    wanted = {f"VISION_{field.upper()}" for field in Settings.model_fields} - store
    assert wanted - names == set()
    assert config_data(objects)["VISION_FAST_SHED"] == "true"


def test_grpc_off(chart: Any) -> None:
    """config.grpcPort 0 (the service's VISION_GRPC_PORT=0): no grpc port anywhere, and the
    manifests still validate."""
    objects = render(chart, {"config": {"grpcPort": 0}})
    assert config_data(objects)["VISION_GRPC_PORT"] == "0"
    assert [p["name"] for p in container(objects)["ports"]] == ["http"]
    assert [p["name"] for p in one(objects, "Service")["spec"]["ports"]] == ["http"]
    notes = objects[("NOTES", "")]["text"]
    assert "gRPC  off" in notes and "grpcurl" not in notes
    for (kind, _), obj in objects.items():
        if kind not in ("NOTES", "ServiceMonitor"):
            kubernetes_validate.validate(without_meta(obj), "1.30", strict=True)
