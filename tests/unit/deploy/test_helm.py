"""The Kubernetes deployment, checked without a cluster: the chicago-taxi chart (deploy/helm/chicago-taxi)
and the values for the official Apache Airflow chart (deploy/helm/airflow-values.yaml).

- `helm lint --strict`, and `helm template` output validated against the Kubernetes API schemas that
  kubernetes-validate ships (offline, strict: an unknown field fails);
- what a reviewer would check by eye: probes, resources, the autoscaler's and the disruption budget's
  targets, secrets only by reference, images from values, the read-only root filesystem;
- rendering without a secret stops with a message naming it (no default password anywhere);
- the Airflow values: only sections of the official chart (1.22), Airflow 3 keys, triggerer on,
  external database, and the same settings as the native stack (scripts/env.sh,
  scripts/mlflow_server.sh); the CeleryExecutor overlay (airflow-values-celery.yaml) on top of
  them: the broker by reference on its own Redis database, workers the project image can run, the
  native stack's capacity (make airflow-ui EXECUTOR=celery);
- taxi_tfx's TFX components in the TFX image: the KubernetesExecutor's pod override (the DAG
  parsed with the image's Kubernetes extras, its pods merged as the executor merges them), the
  Celery overlay's `tfx` worker set.

Helm comes from scripts/go_tool.sh (built from the Go module proxy once, then cached); when it
cannot be built the tests fail with the reason (never skip). The official chart itself is not
downloadable from its repository here (https://airflow.apache.org is not reachable), so neither
values file is rendered with it: the checks above need none of it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
HELM_DIR = REPO_ROOT / "deploy" / "helm"
CHART = HELM_DIR / "chicago-taxi"
TEST_VALUES = CHART / "ci" / "test-values.yaml"
AIRFLOW_VALUES = HELM_DIR / "airflow-values.yaml"
AIRFLOW_CELERY_VALUES = HELM_DIR / "airflow-values-celery.yaml"
HELM_README = HELM_DIR / "README.md"

RELEASE = "chicago-taxi"  # airflow-values.yaml addresses this release's objects by name
NAMESPACE = "taxi"
# helm template's capabilities; kubernetes-validate checks against the oldest and newest it bundles.
RENDER_KUBE_VERSION = "1.35.0"
SCHEMA_KUBE_VERSIONS = ("1.34.0", "1.37.0")
AIRFLOW_CHART_VERSION = "1.22.0"
AIRFLOW_RELEASE = "airflow"  # the release name the README installs the official chart as
# The app the Celery workers' liveness probe pings (and the compose worker's health check).
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"

PREDICTION = f"{RELEASE}-prediction"
MLFLOW = f"{RELEASE}-mlflow"
SECRET_KEYS = ("postgres-password", "reload-token")


@pytest.fixture(scope="module")
def helm() -> str:
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "go_tool.sh"), "path", "helm"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"helm could not be built by scripts/go_tool.sh (it needs Go and the Go module proxy): {proc.stderr[-2000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *args: str, chart: Path = CHART, release: str = RELEASE) -> list[dict]:
    """`helm template` of a chart (this repository's by default) as `release` in NAMESPACE: the objects, in order."""
    proc = run_helm(helm, "template", release, str(chart), "--namespace", NAMESPACE, "--kube-version", RENDER_KUBE_VERSION, *args)
    assert proc.returncode == 0, f"helm template {' '.join(args)} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(helm: str, *args: str) -> str:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", RENDER_KUBE_VERSION, *args)
    assert proc.returncode != 0, f"helm template {' '.join(args)} rendered, but it should have stopped"
    return proc.stderr


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)} among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return matches[0]


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def test_values() -> dict:
    return yaml.safe_load(TEST_VALUES.read_text())


@pytest.fixture(scope="module")
def rendered(helm) -> list[dict]:
    """The chart as the tests' values render it (ci/test-values.yaml)."""
    return render(helm, "-f", str(TEST_VALUES))


@pytest.fixture(scope="module")
def rendered_defaults(helm) -> list[dict]:
    """The chart with its own defaults plus only what has no default (what airflow-values.yaml pairs with)."""
    return render(helm, "--set", "secrets.existingSecret=chicago-taxi-secrets", "--set", "postgresql.host=postgres")


# ---------------------------------------------------------------- helm lint, Kubernetes schemas


def test_chart_passes_helm_lint_strict(helm):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(TEST_VALUES))
    assert proc.returncode == 0 and "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("kube_version", SCHEMA_KUBE_VERSIONS)
def test_rendered_objects_match_the_kubernetes_api_schema(rendered, kube_version):
    import kubernetes_validate

    problems = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not problems, f"not valid for Kubernetes {kube_version}:\n" + "\n".join(problems)


def test_the_values_schema_rejects_an_unknown_key(helm):
    # A typo (replicas for replicaCount) must stop the install, not be ignored.
    stderr = render_error(helm, "-f", str(TEST_VALUES), "--set", "predictionService.replicas=3")
    assert "replicas" in stderr and "additional properties" in stderr.lower(), stderr


# ---------------------------------------------------------------- secrets: required, by reference only


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("secrets.postgresPassword=", "secrets.postgresPassword is required"),
        ("secrets.reloadToken=", "secrets.reloadToken is required"),
        ("postgresql.host=", "postgresql.host is required"),
    ],
)
def test_rendering_without_a_required_value_stops_and_names_it(helm, override, message):
    assert message in render_error(helm, "-f", str(TEST_VALUES), "--set", override)


@pytest.mark.parametrize(("given", "missing"), [("reloadToken", "postgresPassword"), ("postgresPassword", "reloadToken")])
def test_the_chart_defaults_hold_no_password(helm, given, missing):
    # The chart's own values.yaml plus one of the two secrets cannot render: the other has no default.
    stderr = render_error(helm, "--set", "postgresql.host=postgres", "--set", f"secrets.{given}=given-on-the-command-line")
    assert f"secrets.{missing} is required" in stderr


def test_an_existing_secret_replaces_the_charts_own(rendered_defaults):
    assert not [o for o in rendered_defaults if o["kind"] == "Secret"], "the chart made a Secret although secrets.existingSecret is set"
    refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for w in workloads(rendered_defaults)
        for c in containers(w)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {("chicago-taxi-secrets", key) for key in SECRET_KEYS}


def test_secrets_appear_only_in_the_secret(rendered, test_values):
    secret_values = [test_values["secrets"]["postgresPassword"], test_values["secrets"]["reloadToken"]]
    for obj in rendered:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        leaked = [v for v in secret_values if v in text]
        assert not leaked, f"{obj['kind']} {obj['metadata']['name']} holds a secret value in plain text"
        # A URI with a password in it (scheme://user:password@host) is a secret in plain text too.
        assert not re.search(r"://[^/@\s:\"']+:[^/@\s\"']+@", text), f"{obj['kind']} {obj['metadata']['name']} holds a URI with a password"
    for config_map in (o for o in rendered if o["kind"] == "ConfigMap"):
        named_like_secrets = [k for k in config_map["data"] if re.search(r"PASSWORD|PASSWD|TOKEN|SECRET", k, re.IGNORECASE)]
        assert not named_like_secrets, f"ConfigMap {config_map['metadata']['name']} holds {named_like_secrets}: those belong in the Secret"


def test_the_secret_the_pods_reference_is_rendered(rendered):
    secret = find(rendered, "Secret", f"{RELEASE}-secrets")
    assert set(secret["data"]) == set(SECRET_KEYS)
    prediction = containers(find(rendered, "Deployment", PREDICTION))[0]
    mlflow = containers(find(rendered, "Deployment", MLFLOW))[0]
    assert env_of(prediction)["TAXI_RELOAD_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-secrets", "key": "reload-token"}
    assert env_of(mlflow)["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-secrets", "key": "postgres-password"}


# ---------------------------------------------------------------- workloads


def test_every_long_running_container_has_probes_and_every_container_resources(rendered):
    for workload in workloads(rendered):
        for container in containers(workload):
            where = f"{workload['kind']} {workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: no cpu/memory requests"
            assert "memory" in resources.get("limits", {}), f"{where}: no memory limit"
            if workload["kind"] == "Deployment":
                assert "readinessProbe" in container and "livenessProbe" in container, f"{where}: needs readiness and liveness probes"


def test_prediction_service_probes_bentoml_health_endpoints(rendered):
    container = containers(find(rendered, "Deployment", PREDICTION))[0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    # Loading the champion takes minutes: a startup probe holds the liveness probe back meanwhile.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    assert {p["name"] for p in container["ports"]} >= {startup["httpGet"]["port"], container["readinessProbe"]["httpGet"]["port"]}


def test_prediction_service_runs_the_same_service_as_scripts_serve_sh(rendered):
    container = containers(find(rendered, "Deployment", PREDICTION))[0]
    command = container["command"]
    assert command[:3] == ["bentoml", "serve", "bentos/service.py:TaxiFareService"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert int(command[command.index("--port") + 1]) == container["ports"][0]["containerPort"]
    native = (REPO_ROOT / "scripts" / "serve.sh").read_text()
    assert re.search(r"exec bentoml serve bentos/service\.py:TaxiFareService\b", native), "scripts/serve.sh serves something else now"


def test_hpa_scales_the_prediction_deployment_on_cpu(rendered):
    hpa = find(rendered, "HorizontalPodAutoscaler", PREDICTION)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": PREDICTION}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    deployment = find(rendered, "Deployment", PREDICTION)
    # With the autoscaler on, a replica count in the Deployment would fight it on every upgrade.
    assert "replicas" not in deployment["spec"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_pdb_selects_exactly_the_prediction_pods(rendered):
    pdb = find(rendered, "PodDisruptionBudget", PREDICTION)
    assert pdb["apiVersion"] == "policy/v1"
    selector = pdb["spec"]["selector"]["matchLabels"]
    for deployment in (o for o in rendered if o["kind"] == "Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(selector, pod_labels) == (deployment["metadata"]["name"] == PREDICTION), deployment["metadata"]["name"]


def test_services_route_to_their_own_pods(rendered):
    for service in (o for o in rendered if o["kind"] == "Service"):
        targets = [
            d for d in rendered if d["kind"] == "Deployment" and _selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert [d["metadata"]["name"] for d in targets] == [service["metadata"]["name"]], f"Service {service['metadata']['name']} selects {targets}"
        port_names = {p["name"] for c in containers(targets[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_images_come_from_the_values(helm, rendered, test_values):
    expected = f"{test_values['image']['repository']}:{test_values['image']['tag']}"
    images = {c["image"] for w in workloads(rendered) for c in containers(w)}
    assert images == {expected}
    digest = "sha256:" + "ab" * 32
    with_digest = render(helm, "-f", str(TEST_VALUES), "--set", f"image.digest={digest}")
    assert {c["image"] for w in workloads(with_digest) for c in containers(w)} == {f"{test_values['image']['repository']}@{digest}"}


def test_pods_run_unprivileged_with_a_read_only_root(rendered):
    for workload in workloads(rendered):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod.get("automountServiceAccountToken") is False
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
            assert context["readOnlyRootFilesystem"] is True, where
            # Whatever the libraries write (HOME, BENTOML_HOME, model downloads) goes to an emptyDir.
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container["volumeMounts"]), f"{where}: no writable /tmp"


def test_configmap_sets_only_variables_the_code_reads(rendered):
    config_map = find(rendered, "ConfigMap", f"{RELEASE}-env")
    sources = "\n".join(p.read_text() for folder in ("plugins", "bentos") for p in (REPO_ROOT / folder).rglob("*.py"))
    # The libraries' own switches, read by BentoML, MLflow, TensorFlow or Python rather than by us.
    third_party = {
        "HOME",
        "BENTOML_HOME",
        "BENTOML_DO_NOT_TRACK",
        "MLFLOW_ENABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "TF_CPP_MIN_LOG_LEVEL",
        "PYTHONDONTWRITEBYTECODE",
    }
    unknown = [k for k in config_map["data"] if k not in third_party and f'"{k}"' not in sources and f"'{k}'" not in sources]
    assert not unknown, f"the ConfigMap sets {unknown}, which no code under plugins/ or bentos/ reads (a typo?)"
    data = config_map["data"]
    assert data["TAXI_ONLINE_STORE"] == "redis"
    assert data["MLFLOW_TRACKING_URI"] == f"http://{MLFLOW}:5000"


# ---------------------------------------------------------------- MLflow, as the native stack runs it


def _flags(command: list[str]) -> dict[str, str | None]:
    """--flag value pairs of a command line (a flag followed by another flag has no value)."""
    flags: dict[str, str | None] = {}
    for i, token in enumerate(command):
        if token.startswith("--"):
            name, _, inline = token.partition("=")
            following = command[i + 1] if i + 1 < len(command) else None
            flags[name] = inline or (following if following is not None and not following.startswith("--") else None)
    return flags


@pytest.fixture(scope="module")
def native_mlflow_command() -> list[str]:
    script = REPO_ROOT / "scripts" / "mlflow_server.sh"
    proc = subprocess.run(["bash", str(script), "command"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def test_mlflow_server_runs_the_native_scripts_flags(rendered, native_mlflow_command):
    chart_command = containers(find(rendered, "Deployment", MLFLOW))[0]["command"]
    assert chart_command[:2] == native_mlflow_command[:2] == ["mlflow", "server"]
    native, chart = _flags(native_mlflow_command), _flags(chart_command)
    assert set(chart) == set(native), (
        f"flags only in the chart: {sorted(set(chart) - set(native))}, only in scripts/mlflow_server.sh: {sorted(set(native) - set(chart))}"
    )
    assert chart["--default-artifact-root"] == native["--default-artifact-root"] == "mlflow-artifacts:/"
    assert chart["--backend-store-uri"].split("://")[0] == native["--backend-store-uri"].split("://")[0]
    assert chart["--host"] == "0.0.0.0"
    script = (REPO_ROOT / "scripts" / "mlflow_server.sh").read_text()
    env = env_of(containers(find(rendered, "Deployment", MLFLOW))[0])
    for name, value in re.findall(r'export (MLFLOW_[A-Z_]+)="\$\{\1:-([^}]*)\}"', script):
        assert env.get(name, {}).get("value") == value, f"scripts/mlflow_server.sh sets {name}={value}; the chart does not"


def test_mlflow_accepts_the_host_its_clients_send(rendered):
    container = containers(find(rendered, "Deployment", MLFLOW))[0]
    allowed = _flags(container["command"])["--allowed-hosts"].split(",")
    client_host = find(rendered, "ConfigMap", f"{RELEASE}-env")["data"]["MLFLOW_TRACKING_URI"].split("://")[1]
    assert client_host in allowed
    assert f"{MLFLOW}.{NAMESPACE}.svc.cluster.local:5000" in allowed
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # /health is exempt from MLflow's Host check, so the kubelet's probes (Host: <pod IP>) pass.
        assert container[probe]["httpGet"]["path"] == "/health", probe


# ---------------------------------------------------------------- the official Airflow chart's values


@pytest.fixture(scope="module")
def airflow_values() -> dict:
    return yaml.safe_load(AIRFLOW_VALUES.read_text())


# Top-level sections of the official chart's values (chart 1.22, docs: "Parameters reference")
# that this values file may set. The chart accepts unknown top-level keys silently, so a misspelt
# section would be ignored: only these are allowed here.
AIRFLOW_CHART_SECTIONS = frozenset(
    {
        "airflowVersion", "apiSecretKeySecretName", "apiServer", "config", "createUserJob", "dagProcessor", "dags", "data",
        "defaultAirflowRepository", "defaultAirflowTag", "env", "executor", "extraEnv", "extraEnvFrom", "fernetKeySecretName",
        "gid", "images", "ingress", "jwtSecretName", "logs", "migrateDatabaseJob", "pgbouncer", "postgresql", "redis",
        "scheduler", "secret", "statsd", "triggerer", "uid", "volumeMounts", "volumes", "workers",
    }
)  # fmt: skip


@pytest.mark.parametrize("values_file", [AIRFLOW_VALUES, AIRFLOW_CELERY_VALUES], ids=lambda p: p.name)
def test_airflow_values_use_only_sections_of_the_official_chart(values_file):
    unknown = sorted(set(yaml.safe_load(values_file.read_text())) - AIRFLOW_CHART_SECTIONS)
    assert not unknown, f"{values_file.name}: not sections of the official Airflow chart {AIRFLOW_CHART_VERSION}: {unknown}"


def test_airflow_values_are_airflow_3_with_the_components_the_dags_need(airflow_values):
    assert "webserver" not in airflow_values, "Airflow 3 has no webserver: its values go under apiServer"
    assert airflow_values["apiServer"]["enabled"] is True
    # The taxi_stream DAG's Kafka AssetWatcher runs in the triggerer.
    assert airflow_values["triggerer"]["enabled"] is True
    assert airflow_values["dagProcessor"]["enabled"] is True
    assert airflow_values["executor"] == "KubernetesExecutor"
    assert airflow_values["airflowVersion"].startswith("3.")
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and airflow_values["airflowVersion"] == pinned.group(1), "airflowVersion must be the Airflow the image installs"
    assert airflow_values["images"]["airflow"]["repository"] and airflow_values["images"]["airflow"]["tag"]


def test_airflow_uses_an_external_database_and_secrets_by_reference(airflow_values):
    assert airflow_values["postgresql"]["enabled"] is False
    assert airflow_values["data"]["metadataSecretName"]
    assert "metadataConnection" not in airflow_values["data"], "a metadataConnection holds a password: use metadataSecretName"
    for inline, by_reference in (("fernetKey", "fernetKeySecretName"), ("apiSecretKey", "apiSecretKeySecretName"), ("jwtSecret", "jwtSecretName")):
        assert not airflow_values.get(inline), f"{inline} in the values file is a secret in git: use {by_reference}"
        assert airflow_values[by_reference], f"{by_reference} unset: the chart would generate a new secret on every upgrade"
    assert airflow_values["createUserJob"]["enabled"] is False or "password" not in airflow_values["createUserJob"].get("defaultUser", {})
    for entry in airflow_values["env"]:
        assert not re.search(r"PASSWORD|TOKEN|SECRET", entry["name"]), f"{entry['name']} is a secret in plain text"
        assert not re.search(r"://[^/@\s:\"']+:[^/@\s\"']+@", entry["value"]), f"{entry['name']} holds a URI with a password"


def _env_sh_default(name: str) -> str:
    match = re.search(rf'export {name}="?\$\{{{name}:-([^}}]*)\}}"?', (REPO_ROOT / "scripts" / "env.sh").read_text()) or re.search(
        rf'export {name}="?([^"\s$]+)"?$', (REPO_ROOT / "scripts" / "env.sh").read_text(), re.MULTILINE
    )
    assert match, f"scripts/env.sh no longer sets {name}"
    return match.group(1)


@pytest.mark.parametrize(
    ("variable", "section", "option"),
    [
        ("AIRFLOW__CORE__PARALLELISM", "core", "parallelism"),
        ("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "core", "max_active_tasks_per_dag"),
        ("AIRFLOW__CORE__LOAD_EXAMPLES", "core", "load_examples"),
        ("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "core", "dags_are_paused_at_creation"),
    ],
)
def test_airflow_config_matches_the_native_stack(airflow_values, variable, section, option):
    assert str(airflow_values["config"][section][option]) == _env_sh_default(variable)


def test_airflow_env_points_at_the_chicago_taxi_release(airflow_values, rendered_defaults):
    env = {e["name"]: e["value"] for e in airflow_values["env"]}
    chart_env = find(rendered_defaults, "ConfigMap", f"{RELEASE}-env")["data"]
    for name in ("MLFLOW_TRACKING_URI", "TAXI_ONLINE_STORE", "REDIS_HOST", "REDIS_PORT", "KAFKA_BOOTSTRAP_SERVERS"):
        assert env.get(name) == chart_env[name], f"{name}: Airflow has {env.get(name)!r}, the chicago-taxi chart {chart_env[name]!r}"
    assert f"{chart_env['REDIS_HOST']}:{chart_env['REDIS_PORT']}," in env["FEAST_ONLINE_STORE"]
    trigger = json.loads(env["AIRFLOW_CONN_TAXI_KAFKA_TRIGGER"])
    assert trigger["conn_type"] == "kafka" and trigger["extra"]["bootstrap.servers"] == chart_env["KAFKA_BOOTSTRAP_SERVERS"]
    # Every setting of the native trigger connection (scripts/env.sh) with a fixed value or a
    # ${VAR:-default} is the same here (bootstrap.servers, which is the broker's address, aside).
    pairs = re.findall(r'\\"([a-z._]+)\\": \\"(?:\$\{[A-Z_]+:-([^}]*)\}|([^"$\\]+))\\"', (REPO_ROOT / "scripts" / "env.sh").read_text())
    native = {key: default or fixed for key, default, fixed in pairs if key != "conn_type"}
    assert {"group.id", "enable.auto.commit", "auto.offset.reset"} <= set(native), f"scripts/env.sh's trigger connection changed shape: {native}"
    assert {k: trigger["extra"].get(k) for k in native} == native


def test_airflow_pods_share_the_charts_volume_where_the_prediction_service_reads_it(airflow_values, rendered_defaults):
    (claim,) = [
        o["metadata"]["name"] for o in rendered_defaults if o["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in o["spec"]["accessModes"]
    ]
    volumes = {v["name"]: v for v in airflow_values["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in airflow_values["volumeMounts"]}
    shared = [name for name, v in volumes.items() if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
    assert len(shared) == 1, f"airflow-values.yaml does not mount the claim {claim}"
    prediction = find(rendered_defaults, "Deployment", PREDICTION)["spec"]["template"]["spec"]
    claim_volume = next(v["name"] for v in prediction["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    (prediction_mount,) = [m["mountPath"] for m in prediction["containers"][0]["volumeMounts"] if m["name"] == claim_volume]
    assert mounts[shared[0]] == prediction_mount, "Airflow writes Feast's registry where the prediction service does not look"
    assert airflow_values["logs"]["persistence"]["existingClaim"] == claim


def test_airflow_runs_the_image_the_chart_runs(airflow_values):
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert airflow_values["images"]["airflow"]["repository"] == airflow_values["defaultAirflowRepository"] == chart_values["image"]["repository"]
    assert airflow_values["images"]["airflow"]["tag"] == airflow_values["defaultAirflowTag"] == (chart_values["image"]["tag"] or app_version)
    assert (airflow_values["uid"], airflow_values["gid"]) == (
        chart_values["podSecurityContext"]["runAsUser"],
        chart_values["podSecurityContext"]["runAsGroup"],
    )


def test_airflow_header_installs_the_chart_version_the_values_are_written_for(airflow_values):
    header = AIRFLOW_VALUES.read_text()
    assert f"--version {AIRFLOW_CHART_VERSION}" in header
    assert f"helm install {RELEASE} deploy/helm/chicago-taxi" in header


# ---------------------------------------------------------------- the CeleryExecutor overlay


def helm_merge(base: dict, overlay: dict) -> dict:
    """Values as Helm combines two -f files: maps merged key by key, anything else replaced by the
    later file, null deleting the key."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def leaf_paths(values: dict, prefix: tuple = ()) -> set[tuple]:
    paths = set()
    for key, value in values.items():
        paths |= leaf_paths(value, (*prefix, key)) if isinstance(value, dict) and value else {(*prefix, key)}
    return paths


@pytest.fixture(scope="module")
def celery_overlay() -> dict:
    return yaml.safe_load(AIRFLOW_CELERY_VALUES.read_text())


@pytest.fixture(scope="module")
def airflow_celery_values(airflow_values, celery_overlay) -> dict:
    """airflow-values.yaml then airflow-values-celery.yaml, as `helm install -f ... -f ...` merges them."""
    return helm_merge(airflow_values, celery_overlay)


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a text's ```bash blocks, or of a YAML header's indented comment lines."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    if not blocks:  # a values file's header: "#   command", continued with a trailing backslash
        blocks = ["\n".join(line[1:] for line in text.splitlines() if line.startswith("#   "))]
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                found.append(tokens[:cut])
                tokens = tokens[cut + 1 :]
    return [tokens for tokens in found if tokens]


def flag_values(tokens: list[str], flag: str) -> list[str]:
    return [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token == flag] + [
        token.split("=", 1)[1] for token in tokens if token.startswith(flag + "=")
    ]


def native_celery_env() -> dict[str, str]:
    """What scripts/env.sh exports for `make airflow-ui EXECUTOR=celery` (TAXI_EXECUTOR=celery)."""
    clean = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "TAXI_EXECUTOR": "celery", "TAXI_AIRFLOW_DB": "postgres"}
    script = f"source {shlex.quote(str(REPO_ROOT / 'scripts' / 'env.sh'))} && env -0"
    out = subprocess.run(["bash", "-c", script], env=clean, capture_output=True, check=True, cwd=REPO_ROOT).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_the_celery_overlay_changes_the_executor_and_adds_only_celery_settings(airflow_values, celery_overlay, airflow_celery_values):
    """Given after airflow-values.yaml, the overlay switches the executor and sets what only Celery
    reads: everything the base file sets (image, secrets, env, volumes, components) stays."""
    assert set(celery_overlay) <= {"executor", "data", "config", "workers", "extraEnv"}, sorted(celery_overlay)
    overridden = leaf_paths(celery_overlay) & leaf_paths(airflow_values)
    # extraEnv holds only TAXI_TFX_IMAGE, the KubernetesExecutor's pod override: Celery routes by queue.
    assert overridden == {("executor",), ("extraEnv",)}, f"the overlay replaces settings of airflow-values.yaml: {sorted(overridden)}"
    assert celery_overlay["extraEnv"] is None and "extraEnv" not in airflow_celery_values
    assert (airflow_values["executor"], airflow_celery_values["executor"]) == ("KubernetesExecutor", "CeleryExecutor")
    assert set(celery_overlay["config"]) == {"celery"} and set(celery_overlay["workers"]) == {"celery"}, "Celery's own sections only"
    for component in ("apiServer", "triggerer", "dagProcessor"):
        assert airflow_celery_values[component]["enabled"] is True, component


def test_the_celery_broker_is_a_secret_on_its_own_redis_database(airflow_values, airflow_celery_values, rendered_defaults):
    """The broker URL comes from a Secret the README makes (a Redis URL may hold a password), not
    from the chart's own install-time one; it points at the Redis the chicago-taxi chart is given,
    database 1, while the feature store keeps database 0; the chart's own Redis stays off."""
    data = airflow_celery_values["data"]
    assert "brokerUrl" not in data, "a broker URL in a values file: use data.brokerUrlSecretName"
    secret = data["brokerUrlSecretName"]
    # The chart writes "<release>-broker-url" itself at install (even for another executor): a name
    # of its own avoids "already exists" when a KubernetesExecutor release is switched to Celery.
    assert secret != f"{AIRFLOW_RELEASE}-broker-url"
    assert airflow_celery_values["redis"]["enabled"] is False
    chart_env = find(rendered_defaults, "ConfigMap", f"{RELEASE}-env")["data"]
    env = {e["name"]: e["value"] for e in airflow_values["env"]}
    assert "db=" not in env["FEAST_ONLINE_STORE"], "the feature store's Redis database is no longer the default 0"
    for source, text in (("deploy/helm/README.md", HELM_README.read_text()), (AIRFLOW_CELERY_VALUES.name, AIRFLOW_CELERY_VALUES.read_text())):
        made = [t for t in shell_commands(text) if t[:1] == ["kubectl"] and "secret" in t and t[t.index("generic") + 1 :][:1] == [secret]]
        assert len(made) == 1, f"{source} does not create the Secret {secret}"
        (literal,) = flag_values(made[0], "--from-literal")
        key, _, url = literal.partition("=")
        assert key == "connection", f"{source}: the chart reads the broker URL from the key `connection`, not {key!r}"
        broker = urlsplit(url)
        assert (broker.scheme, broker.hostname, str(broker.port)) == ("redis", chart_env["REDIS_HOST"], chart_env["REDIS_PORT"]), url
        assert broker.path == "/1", f"{source}: the broker must have a Redis database of its own, not {broker.path!r}"


def test_celery_capacity_and_broker_database_are_the_native_stacks(airflow_celery_values):
    """workers x concurrency = the parallelism of 4 (2 workers x 2 on 2 cores natively); the same
    concurrency and Redis database as `make airflow-ui EXECUTOR=celery`."""
    native = native_celery_env()
    assert native["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", "TAXI_EXECUTOR=celery no longer selects Celery natively"
    concurrency = airflow_celery_values["config"]["celery"]["worker_concurrency"]
    replicas = airflow_celery_values["workers"]["celery"]["replicas"]
    assert str(concurrency) == native["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    assert replicas * concurrency == airflow_celery_values["config"]["core"]["parallelism"] == int(native["AIRFLOW__CORE__PARALLELISM"])
    assert urlsplit(native["AIRFLOW__CELERY__BROKER_URL"]).path == "/1"
    # Results: Airflow's metadata database, "db+" and its URL natively; the chart derives the same
    # when no result backend Secret is named.
    assert native["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + native["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert not {"resultBackendSecretName", "resultBackendConnection"} & set(airflow_celery_values["data"])


def test_celery_workers_run_on_the_project_image(airflow_celery_values):
    """The image has neither the official image's /entrypoint (the chart's default worker probe)
    nor /clean-logs (its log groomer); task logs go to the shared claim, so no claim per worker."""
    celery = airflow_celery_values["workers"]["celery"]
    probe = " ".join(celery["livenessProbe"]["command"])
    assert "/entrypoint" not in probe and f"--app {CELERY_APP} inspect ping" in probe and '-d "celery@$HOSTNAME"' in probe
    assert celery["livenessProbe"]["timeoutSeconds"] >= 10, "the probe imports Airflow: seconds on a busy node"
    assert celery["logGroomerSidecar"]["enabled"] is False
    assert celery["persistence"]["enabled"] is False and airflow_celery_values["logs"]["persistence"]["existingClaim"]
    # Memory for `worker_concurrency` tasks, each as much as a KubernetesExecutor task pod gets.
    concurrency, per_task = (
        airflow_celery_values["config"]["celery"]["worker_concurrency"],
        airflow_celery_values["workers"]["kubernetes"]["resources"],
    )
    for kind in ("requests", "limits"):
        assert gibibytes(celery["resources"][kind]["memory"]) >= concurrency * gibibytes(per_task[kind]["memory"]), kind
    assert "cpu" in celery["resources"]["requests"]


def gibibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity).groups()
    return float(number) / (1024 if unit == "Mi" else 1)


@pytest.mark.parametrize("source", [HELM_README, AIRFLOW_CELERY_VALUES], ids=lambda p: p.name)
def test_the_celery_install_gives_both_values_files_in_order(source):
    installs = [t for t in shell_commands(source.read_text()) if t[:2] in (["helm", "install"], ["helm", "upgrade"]) and AIRFLOW_RELEASE in t[2:3]]
    celery = [t for t in installs if AIRFLOW_CELERY_VALUES.name in " ".join(t)]
    assert celery, f"{source.name} shows no helm install of the Celery overlay"
    for tokens in celery:
        assert flag_values(tokens, "-f") == ["deploy/helm/airflow-values.yaml", "deploy/helm/airflow-values-celery.yaml"], tokens
        assert flag_values(tokens, "--version") == [AIRFLOW_CHART_VERSION], tokens
        # The tfx worker set runs the release's one image: the TFX image, named as extraEnv names it.
        sets = dict(value.split("=", 1) for value in flag_values(tokens, "--set"))
        assert sets["images.airflow.repository"].endswith("-tfx"), f"{source.name}: the Celery release must run the TFX image: {tokens}"


# ---------------------------------------------------------------- YAML style


def test_values_files_and_chart_metadata_pass_yamllint():
    files = [AIRFLOW_VALUES, AIRFLOW_CELERY_VALUES, CHART / "Chart.yaml", CHART / "values.yaml", TEST_VALUES]
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(REPO_ROOT / ".yamllint.yaml"), "-s", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- the image's Kubernetes extras


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_kubernetes_extras_are_pinned_beside_requirements_without_changing_a_pin(airflow_values):
    base, extras = _pins(REPO_ROOT / "requirements.txt"), _pins(REPO_ROOT / "deploy" / "requirements-kubernetes.txt")
    assert all(extras.values()), f"unpinned: {[n for n, v in extras.items() if not v]}"
    assert not set(base) & set(extras), f"pinned in both files: {sorted(set(base) & set(extras))}"
    wanted = set(_pins(REPO_ROOT / "deploy" / "requirements-kubernetes.in"))
    assert wanted <= set(extras), f"in requirements-kubernetes.in but not pinned: {sorted(wanted - set(extras))}"
    # What the values need: the executor's provider, and the auth manager's.
    assert airflow_values["executor"] != "KubernetesExecutor" or "apache-airflow-providers-cncf-kubernetes" in extras
    assert "providers.fab." not in airflow_values["config"]["core"].get("auth_manager", "") or "apache-airflow-providers-fab" in extras


# ---------------------------------------------------------------- taxi_tfx in the TFX image


def render_extra_env(helm: str, tmp_path: Path, *args: str) -> dict[str, str]:
    """The extraEnv of the values, rendered as the official chart renders it (`tpl` with the
    release's values), by a scratch chart holding only that template."""
    import tempfile

    chart = Path(tempfile.mkdtemp(dir=tmp_path, prefix="extra-env-"))
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: extra-env\nversion: 0.1.0\n")
    (chart / "templates" / "env.yaml").write_text("{{- with .Values.extraEnv }}\nentries:\n{{- tpl . $ | nindent 2 }}\n{{- end }}\n")
    proc = run_helm(helm, "template", "airflow", str(chart), *args)
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout) or {}
    return {entry["name"]: entry["value"] for entry in rendered.get("entries", [])}


README_SETS = ("--set", "images.airflow.repository=registry.example.com/chicago-taxi-mlops", "--set", "images.airflow.tag=0.1.0")


def test_the_tfx_image_is_the_airflow_image_named_with_tfx(helm, tmp_path, airflow_values):
    """TAXI_TFX_IMAGE follows --set images.airflow.*: the TFX image is the Airflow (project) image's
    repository with "-tfx", same tag, as airflow-values.yaml's header builds it on that image; with
    the Celery overlay it is gone (Celery routes by queue)."""
    base = ("-f", str(AIRFLOW_VALUES))
    assert render_extra_env(helm, tmp_path, *base) == {"TAXI_TFX_IMAGE": f"{airflow_values['images']['airflow']['repository']}-tfx:0.1.0"}
    image = render_extra_env(helm, tmp_path, *base, *README_SETS)["TAXI_TFX_IMAGE"]
    assert image == "registry.example.com/chicago-taxi-mlops-tfx:0.1.0"
    (build,) = [t for t in shell_commands(AIRFLOW_VALUES.read_text()) if t[:2] == ["docker", "build"] and "runtime/tfx/Dockerfile" in t]
    assert flag_values(build, "-f") == ["runtime/tfx/Dockerfile"] and flag_values(build, "--target") == ["worker"]
    assert flag_values(build, "-t") == [image] and flag_values(build, "--build-arg") == [
        "PROJECT_IMAGE=registry.example.com/chicago-taxi-mlops:0.1.0"
    ]
    assert render_extra_env(helm, tmp_path, *base, "-f", str(AIRFLOW_CELERY_VALUES), *README_SETS) == {}


@pytest.fixture(scope="module")
def kubernetes_extras() -> Path:
    """deploy/requirements-kubernetes.txt (the Kubernetes image's extras: the kubernetes client and
    the KubernetesExecutor's provider), installed once per lock into a cached directory for
    PYTHONPATH, beside the venv whose pins they were resolved against."""
    import hashlib
    import shutil

    lock = REPO_ROOT / "deploy" / "requirements-kubernetes.txt"
    cache_root = Path(os.environ.get("TAXI_TOOL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chicago-taxi")
    target = cache_root / "kubernetes-extras" / hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    if not target.is_dir():
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
        assert uv, "no uv (requirements.txt pins it into the venv)"
        command = [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(partial), "--python", sys.executable, "-r", str(lock)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"could not install {lock.name} (it needs the package index): {proc.stderr[-2000:]}", pytrace=False)
        partial.rename(target)
    return target


KUBERNETES_DAG_CHECK = """
import json, sys
from kubernetes.client import models as k8s
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from airflow.serialization.serialized_objects import DagSerialization

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
# As the DAG processor stores it and the scheduler reads it back.
dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags["taxi_tfx"]))
template = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image=sys.argv[2])]))
pods = {}
for task in dag.tasks:
    pod = PodGenerator.reconcile_pods(template, PodGenerator.from_obj(task.executor_config))
    pods[task.task_id] = {"queue": task.queue, "images": {c.name: c.image for c in pod.spec.containers}}
print(json.dumps(pods))
"""


def test_the_kubernetes_executor_runs_taxi_tfx_components_in_the_tfx_image(helm, tmp_path, kubernetes_extras):
    """The DAG parsed as the DAG processor of the Kubernetes image parses it (its extras installed,
    TAXI_TFX_IMAGE as the chart renders it), serialized and read back, each task's pod_override
    merged over a pod template as the KubernetesExecutor merges them: the component tasks' container
    "base" runs the TFX image, every other task the Airflow image."""
    from chicago_taxi.tfx_pipeline.layout import COMPONENTS

    tfx_image = render_extra_env(helm, tmp_path, "-f", str(AIRFLOW_VALUES), *README_SETS)["TAXI_TFX_IMAGE"]
    airflow_image = "registry.example.com/chicago-taxi-mlops:0.1.0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAXI_TFX", "AIRFLOW"))}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(kubernetes_extras)]),
        "TAXI_TFX_IMAGE": tfx_image,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run(
        [sys.executable, "-c", KUBERNETES_DAG_CHECK, str(REPO_ROOT / "dags" / "taxi_tfx.py"), airflow_image],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pods = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(COMPONENTS) < set(pods)
    for task_id, pod in pods.items():
        expected = tfx_image if task_id in COMPONENTS else airflow_image
        assert pod["images"] == {"base": expected}, f"{task_id}: {pod}"
        assert (pod["queue"] == "tfx") == (task_id in COMPONENTS), f"{task_id}: queue {pod['queue']}"


def test_the_celery_overlay_gives_taxi_tfx_a_worker_set_on_its_queue(airflow_celery_values):
    """Chart 1.22's worker sets: `tfx` consumes the queue the DAG sends the TFX components to, with
    the other workers' settings (probe, resources); the default workers keep the default queue."""
    from unittest import mock

    from chicago_taxi.core import config

    with mock.patch.dict(os.environ, {k: v for k, v in os.environ.items() if not k.startswith("TAXI_")}, clear=True):
        tfx_queue = config.load_settings().tfx_queue
    celery = airflow_celery_values["workers"]["celery"]
    (tfx_set,) = celery["sets"]
    assert tfx_set == {"name": "tfx", "queue": tfx_queue, "replicas": 1}, tfx_set
    assert "queue" not in celery and celery.get("enableDefault", True) is True, "the default workers stay, on the default queue"
