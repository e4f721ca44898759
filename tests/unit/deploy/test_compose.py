"""Static checks of docker-compose.yaml, the project image (Dockerfile, .dockerignore), the TFX image
(runtime/tfx/Dockerfile), .env.example and the scripts under deploy/compose/.

No container engine runs on the build machines, so the stack is checked without starting it:
against the Compose specification (check-jsonschema) and Compose's own loader (compose-config, built
from the Go module proxy by scripts/go_tool.sh), for the structure the stack relies on (health
checks, conditions, loopback ports, documented variables, required secrets), and against the native
scripts that run the same services on this machine (scripts/env.sh, mlflow_server.sh, serve.sh,
kafka.sh, airflow_stack.sh, the Makefile): the compose stack must behave like `make airflow-ui`.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from fixtures.env import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
TFX_DOCKERFILE = REPO_ROOT / "runtime" / "tfx" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
DEPLOY_COMPOSE = REPO_ROOT / "deploy" / "compose"
SCRIPTS = REPO_ROOT / "scripts"
BIN = Path(sys.executable).parent

AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# The CeleryExecutor's services: only in the compose profile `celery` (the default stack runs the LocalExecutor).
CELERY_PROFILE = "celery"
CELERY_SERVICES = ("airflow-worker", "airflow-worker-tfx", "flower")
# taxi_tfx's component tasks' worker: the TFX image (runtime/tfx/Dockerfile, target worker), not the project image.
TFX_WORKER = "airflow-worker-tfx"
PROJECT_SERVICES = (*AIRFLOW_SERVICES, *CELERY_SERVICES, "kafka-init", "mlflow", "prediction-service")
# What .env holds to run the Celery variant (the compose file's header).
CELERY_ENV = {"AIRFLOW_EXECUTOR": "CeleryExecutor", "COMPOSE_PROFILES": CELERY_PROFILE}
# The app the worker's health check (and the Helm overlay's liveness probe) pings through the broker.
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
# Images kept by their upstream projects (Docker's official postgres and redis, Apache Kafka's own).
UPSTREAM_IMAGES = {"postgres", "redis", "apache/kafka"}
# Where the project lives in the image (Dockerfile's TAXI_REPO_ROOT).
IMAGE_ROOT = "/opt/taxi"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
# Compose interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, $VAR.
INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# ---------------------------------------------------------------- helpers
def raw_compose() -> dict:
    """docker-compose.yaml as YAML (anchors and merge keys resolved), variables not interpolated."""
    return copy.deepcopy(_parsed(COMPOSE_FILE.read_text()))


@functools.cache
def _parsed(text: str) -> dict:
    return yaml.safe_load(text)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in `value` with `env` (what .env would hold)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            return arg if current is None or (op == ":-" and current == "") else current
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return current or ""

    return INTERPOLATION.sub(substitute, value)


def variables_in(value) -> list[tuple[str, str | None, str | None]]:
    """Every (name, operator, argument) a compose value interpolates."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in variables_in(item)]
    if isinstance(value, list):
        return [v for item in value for v in variables_in(item)]
    if not isinstance(value, str):
        return []
    return [(m.group(1) or m.group(4), m.group(2), m.group(3)) for m in INTERPOLATION.finditer(value) if m.group(0) != "$$"]


def dummy_secrets() -> dict[str, str]:
    return {name: f"test-{name.lower()}" for name, value in env_example().items() if SECRET_NAME.search(name) and value == ""}


def compose(**env: str) -> dict:
    """docker-compose.yaml as compose runs it with .env.example's values, test secrets and `env`."""
    return interpolate(raw_compose(), {**env_example(), **dummy_secrets(), **env})


def service_env(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        joined.append(current.strip())
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined]


def dockerfile_assignments(kind: str, instructions: list[tuple[str, str]] | None = None) -> dict[str, str]:
    values = {}
    for instruction, args in dockerfile_instructions() if instructions is None else instructions:
        if instruction == kind:
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                values[name] = value
    return values


def dockerfile_stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A multi-stage Dockerfile's instructions by stage name (`FROM image AS name`); "" holds the
    global ARGs before the first FROM. Each stage starts with its FROM."""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for kind, args in dockerfile_instructions(path):
        if kind == "FROM":
            current = args.split()[-1] if " AS " in args.upper() else args
            stages[current] = []
        stages[current].append((kind, args))
    return stages


def copied_sources(path: Path = DOCKERFILE) -> set[str]:
    """What a Dockerfile copies from the build context (every COPY's sources)."""
    sources = set()
    for kind, args in dockerfile_instructions(path):
        tokens = [token for token in shlex.split(args) if not token.startswith("--")]
        if kind == "COPY" and "--from" not in args:
            sources |= {token.rstrip("/") for token in tokens[:-1]}
    return sources


def load_settings_without_env():
    """The project's settings with their own defaults (no TAXI_* variable set)."""
    from unittest import mock

    from chicago_taxi.core import config

    with mock.patch.dict(os.environ, {k: v for k, v in os.environ.items() if not k.startswith("TAXI_")}, clear=True):
        return config.load_settings()


def container_env(service_name: str, compose_file: dict | None = None) -> dict[str, str]:
    """What a project-image container sees: the Dockerfile's ENV, overridden by the service's environment."""
    compose_file = compose_file or compose()
    return {**dockerfile_assignments("ENV"), **service_env(compose_file["services"][service_name])}


def script_default(script: Path, name: str) -> str:
    """The default a script gives a variable (`${NAME:-default}`, its first occurrence)."""
    match = re.search(r"\$\{" + name + r":-([^}]*)\}", script.read_text())
    assert match, f"{script.relative_to(REPO_ROOT)} gives {name} no default"
    return match.group(1)


def native_env(**inputs: str) -> dict[str, str]:
    """What `source scripts/env.sh` exports from a clean environment plus `inputs`, minus bash's own variables."""
    base = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", **inputs}

    def run(script: str) -> dict[str, str]:
        out = subprocess.run(["bash", "-c", script], env=base, capture_output=True, check=True, cwd=REPO_ROOT).stdout.decode()
        return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)

    bash_own = run("env -0")
    sourced = run(f"source {shlex.quote(str(SCRIPTS / 'env.sh'))} && env -0")
    return {k: v for k, v in sourced.items() if k == "PATH" or k in inputs or k not in bash_own}


def published_ports(service: dict) -> list[str]:
    ports = []
    for port in service.get("ports") or []:
        assert isinstance(port, str), f"use the short syntax HOST_IP:HOST_PORT:CONTAINER_PORT, not {port!r}"
        ports.append(port)
    return ports


def one_shot_services(compose_file: dict) -> set[str]:
    """Services another one waits for with service_completed_successfully: they run once and exit."""
    return {
        target
        for service in compose_file["services"].values()
        for target, spec in (service.get("depends_on") or {}).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }


# ---------------------------------------------------------------- the specification and the linter
def test_compose_file_validates_against_the_compose_specification():
    """The Compose specification's JSON schema (bundled with check-jsonschema): unknown keys, wrong
    types and misspelled options fail here instead of at `docker compose up`."""
    proc = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yaml_files_pass_yamllint():
    files = [COMPOSE_FILE, *sorted(DEPLOY_COMPOSE.rglob("*.yaml")), *sorted(DEPLOY_COMPOSE.rglob("*.yml"))]
    proc = subprocess.run([str(BIN / "yamllint"), "-c", str(REPO_ROOT / ".yamllint.yaml"), "-s", *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- Compose's own loader (compose-config)
@pytest.fixture(scope="session")
def compose_config() -> Path:
    """deploy/compose/compose-config: `docker compose config` from Compose's own loader (compose-go),
    built by scripts/go_tool.sh (or the binary in COMPOSE_CONFIG_BIN)."""
    if os.environ.get("COMPOSE_CONFIG_BIN"):
        return Path(os.environ["COMPOSE_CONFIG_BIN"])
    proc = subprocess.run([str(SCRIPTS / "go_tool.sh"), "path", "compose-config"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/go_tool.sh could not build compose-config (it needs Go and the Go module proxy): {proc.stderr[-2000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


def run_compose_config(binary: Path, env_file: Path) -> subprocess.CompletedProcess:
    # A clean environment: variables exported in the shell (scripts/env.sh) would override .env.
    clean = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(binary), "-env-file", str(env_file), str(COMPOSE_FILE)], capture_output=True, text=True, env=clean, cwd=REPO_ROOT, timeout=60
    )


def test_compose_loads_the_stack_with_a_generated_env(compose_config, tmp_path):
    """What `docker compose config` does: .env read, variables interpolated, the model normalized and
    checked for consistency (undefined services, networks, volumes) by Compose's own loader."""
    env_file = tmp_path / ".env"
    subprocess.run([str(DEPLOY_COMPOSE / "generate-env.sh"), str(env_file)], check=True, capture_output=True)
    proc = run_compose_config(compose_config, env_file)
    assert proc.returncode == 0, proc.stderr
    project = yaml.safe_load(proc.stdout)
    # Without a profile: the LocalExecutor stack, no Celery service.
    assert set(project["services"]) == set(raw_compose()["services"]) - set(CELERY_SERVICES)
    assert {s["environment"]["AIRFLOW__CORE__EXECUTOR"] for s in project["services"].values() if "AIRFLOW_HOME" in s.get("environment", {})} == {
        "LocalExecutor"
    }
    generated = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    airflow = project["services"]["airflow-scheduler"]["environment"]
    assert airflow["AIRFLOW__API_AUTH__JWT_SECRET"] == generated["AIRFLOW_JWT_SECRET"]
    assert f":{generated['POSTGRES_PASSWORD']}@postgres:" in airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for name, service in project["services"].items():
        for port in service.get("ports") or []:
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond this machine"


def test_compose_loads_the_celery_variant_as_the_header_says(compose_config, tmp_path):
    """The generated .env plus the two lines the header gives (AIRFLOW_EXECUTOR, COMPOSE_PROFILES):
    Compose's loader then adds the worker and Flower, and every Airflow container runs the
    CeleryExecutor on the same broker and result backend."""
    env_file = tmp_path / ".env"
    subprocess.run([str(DEPLOY_COMPOSE / "generate-env.sh"), str(env_file)], check=True, capture_output=True)
    header = COMPOSE_FILE.read_text().split("\nx-", 1)[0]
    for name, value in CELERY_ENV.items():
        assert re.search(rf"^#\s+{name}={value}$", header, re.M), f"the header does not say to set {name}={value} in .env"
    env_file.write_text(env_file.read_text() + "".join(f"{k}={v}\n" for k, v in CELERY_ENV.items()))
    proc = run_compose_config(compose_config, env_file)
    assert proc.returncode == 0, proc.stderr
    project = yaml.safe_load(proc.stdout)
    assert set(project["services"]) == set(raw_compose()["services"])
    generated = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    airflow = {name: s["environment"] for name, s in project["services"].items() if "AIRFLOW_HOME" in s.get("environment", {})}
    assert set(airflow) == {*AIRFLOW_SERVICES, *CELERY_SERVICES}
    for name, env in airflow.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/1", name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith(
            f"db+postgresql+psycopg2://postgres:{generated['POSTGRES_PASSWORD']}@postgres:5432/"
        ), name
    worker = project["services"]["airflow-worker"]
    assert worker["image"] == project["services"]["airflow-scheduler"]["image"] and worker["user"] == "50000:0"
    assert (worker["depends_on"]["airflow-apiserver"]["condition"], worker["depends_on"]["redis"]["condition"]) == ("service_healthy",) * 2
    (flower_port,) = project["services"]["flower"]["ports"]
    assert flower_port["host_ip"] == "127.0.0.1" and flower_port["target"] == 5555


def test_compose_refuses_to_start_without_each_secret(compose_config, tmp_path):
    """.env.example copied as it is (every secret empty): Compose stops and names each secret."""
    env_file = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, env_file)
    proc = run_compose_config(compose_config, env_file)
    assert proc.returncode != 0
    for name in dummy_secrets():
        assert f"required variable {name} is missing a value" in proc.stderr, f"compose starts without {name}:\n{proc.stderr}"


# ---------------------------------------------------------------- structure
def test_the_airflow_services_share_x_airflow_common():
    data = compose()
    common = data["x-airflow-common"]
    for name in (*AIRFLOW_SERVICES, *CELERY_SERVICES):
        service = data["services"][name]
        if name != TFX_WORKER:  # the TFX image, built on this one (test_the_tfx_worker_...)
            assert service["image"] == common["image"] and service["build"] == common["build"], f"{name}: not the x-airflow-common image"
        env = service_env(service)
        differing = {k for k, v in service_env(common).items() if env.get(k) != v}
        assert not differing, f"{name} does not carry x-airflow-common's {sorted(differing)}"
        assert set(common["volumes"]) <= set(service["volumes"]), f"{name} lacks x-airflow-common's volumes"
        if name != "airflow-init":  # runs as root to hand the volumes over (as in the official file)
            assert service["user"] == common["user"] == "50000:0", name
            assert common["depends_on"].items() <= service["depends_on"].items(), f"{name} does not wait for x-airflow-common's services"
            assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert raw_compose()["x-airflow-common"]["user"] == "${AIRFLOW_UID:-50000}:0"
    assert service_env(common)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert service_env(compose(**CELERY_ENV)["x-airflow-common"])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_only_the_celery_services_are_in_a_profile():
    """`docker compose up` without a profile starts the LocalExecutor stack exactly as before;
    the worker and Flower come only with the `celery` profile."""
    for name, service in raw_compose()["services"].items():
        expected = [CELERY_PROFILE] if name in CELERY_SERVICES else None
        assert service.get("profiles") == expected, f"{name}: profiles {service.get('profiles')}, expected {expected}"
    # A service of the default stack waiting for a Celery one would not start without the profile.
    for name, service in raw_compose()["services"].items():
        if name not in CELERY_SERVICES:
            assert not set(service.get("depends_on") or {}) & set(CELERY_SERVICES), name


def test_the_celery_broker_is_redis_database_1_apart_from_the_feature_store():
    data = compose(**CELERY_ENV)
    env, taxi = service_env(data["x-airflow-common"]), service_env({"environment": data["x-taxi-env"]})
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, str(broker.port)) == ("redis", taxi["REDIS_HOST"], taxi["REDIS_PORT"]), "the redis service"
    assert broker.path == "/1", f"the broker must use its own Redis database, not {broker.path!r}"
    # Feast's online store: database 0 (its connection string names none, redis-py's default).
    feast = re.search(r'connection_string: "([^"]+)"', taxi["FEAST_ONLINE_STORE"]).group(1)
    assert "db=" not in feast or "db=0" in feast.split(","), feast
    # Results in Airflow's own database, as its metadata: the same server, database and credentials.
    backend, metadata = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"]), urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert backend.scheme == f"db+{metadata.scheme}", "the metadata database's driver (what Airflow derives when unset)"
    assert (backend.hostname, backend.port, backend.path, backend.username, backend.password) == (
        metadata.hostname,
        metadata.port,
        metadata.path,
        metadata.username,
        metadata.password,
    )


def test_every_project_service_runs_the_one_image_built_from_the_dockerfile():
    data = compose()
    project_image = data["x-project-image"]
    assert project_image["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    for name, service in data["services"].items():
        if name == TFX_WORKER:  # the TFX image, built on the project image (test_the_tfx_worker_...)
            assert service["build"]["additional_contexts"]["project"].removeprefix("service:") in PROJECT_SERVICES
        elif name in PROJECT_SERVICES:
            assert (service["image"], service["build"]) == (project_image["image"], project_image["build"]), name
        else:
            assert "build" not in service, f"{name}: only the project image is built here"
            repository = service["image"].rsplit(":", 1)[0]
            assert repository in UPSTREAM_IMAGES, f"{name}: {service['image']} is not an image kept by its upstream project"
            assert ":" in service["image"] and not service["image"].endswith(":latest"), f"{name}: pin the image's version"
        assert "bitnami" not in service["image"], f"{name}: Bitnami images are no longer freely available"


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy():
    data = compose()
    one_shot = one_shot_services(data)
    assert one_shot == {"airflow-init", "kafka-init"}
    for name, service in data["services"].items():
        if name in one_shot:
            assert service.get("restart", "no") == "no", f"{name} runs once: it must not restart"
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") in ("unless-stopped", "always"), f"{name} does not come back after a crash or a reboot"


def test_every_dependency_waits_for_a_condition_it_can_reach():
    data = compose()
    one_shot = one_shot_services(data)
    for name, service in data["services"].items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on as a list waits for nothing"
        for target, spec in depends_on.items():
            assert target in data["services"], f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition")
            expected = "service_completed_successfully" if target in one_shot else "service_healthy"
            assert condition == expected, f"{name} -> {target}: condition {condition!r}, expected {expected!r}"
            if expected == "service_healthy":
                assert data["services"][target].get("healthcheck"), f"{name} waits for {target}, which has no health check"


def test_published_ports_bind_to_loopback_unless_bind_address_is_set():
    raw = raw_compose()
    published = {}
    for name, service in raw["services"].items():
        for port in published_ports(service):
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name} publishes {port} without the BIND_ADDRESS guard"
            published[name] = port
    assert set(published) == {"airflow-apiserver", "mlflow", "prediction-service", "kafka", "flower"}, "PostgreSQL and Redis stay inside"
    for name, service in compose()["services"].items():
        assert all(port.startswith("127.0.0.1:") for port in published_ports(service)), name
    assert all(port.startswith("0.0.0.0:") for port in published_ports(compose(BIND_ADDRESS="0.0.0.0")["services"]["mlflow"]))


def test_volumes_are_named_and_declared():
    raw = raw_compose()
    for name, service in raw["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):  # a committed file of this repository, read-only
                assert volume.endswith(":ro") and (REPO_ROOT / source).is_file(), f"{name}: {volume}"
            else:
                assert source in raw["volumes"], f"{name}: {source} is not a declared named volume"
    assert {"postgres-data", "redis-data", "kafka-data", "mlflow-artifacts"} <= set(raw["volumes"])


# ---------------------------------------------------------------- .env.example and secrets
def test_every_variable_of_the_compose_file_is_documented_in_env_example_with_its_default():
    documented = env_example()
    for name, op, argument in variables_in(raw_compose()):
        assert name in documented, f"${{{name}}} is used in docker-compose.yaml but not documented in .env.example"
        if op in (":-", "-"):
            assert documented[name] == argument, f".env.example sets {name}={documented[name]!r}, the compose default is {argument!r}"
    unused = set(documented) - {name for name, _, _ in variables_in(raw_compose())}
    assert not unused, f".env.example documents variables docker-compose.yaml does not read: {sorted(unused)}"


def test_env_example_holds_no_secret_value():
    text = ENV_EXAMPLE.read_text()
    filled = {name: value for name, value in env_example().items() if SECRET_NAME.search(name) and value.strip()}
    assert not filled, f".env.example must leave secrets empty: {sorted(filled)}"
    assert "secrets.token_urlsafe" in text, ".env.example must say how to generate a secret"


def test_secrets_are_required_with_a_message():
    uses = [(name, op, argument) for name, op, argument in variables_in(raw_compose()) if SECRET_NAME.search(name)]
    assert {name for name, _, _ in uses} == set(dummy_secrets()), "every empty secret of .env.example is used, and only those"
    for name, op, argument in uses:
        assert op == ":?" and argument and argument.strip(), (
            f"${{{name}}} must be written ${{{name}:?message}}: compose then refuses to start without it"
        )
    with pytest.raises(ValueError, match="required variable POSTGRES_PASSWORD"):
        compose(POSTGRES_PASSWORD="")


def test_generate_env_fills_every_secret_and_never_overwrites(tmp_path):
    out = tmp_path / ".env"
    script = DEPLOY_COMPOSE / "generate-env.sh"
    subprocess.run([str(script), str(out)], check=True, capture_output=True)
    example_lines, generated_lines = ENV_EXAMPLE.read_text().splitlines(), out.read_text().splitlines()
    assert len(example_lines) == len(generated_lines)
    secrets = {}
    for before, after in zip(example_lines, generated_lines):
        name = before.split("=", 1)[0]
        if name in dummy_secrets():
            secrets[name] = after.removeprefix(f"{name}=")
            assert len(secrets[name]) >= 40 and re.fullmatch(r"[A-Za-z0-9_=-]+", secrets[name]), f"{name}: {after!r}"
        else:
            assert after == before, "only the empty secrets change"
    assert len(set(secrets.values())) == len(secrets), "each secret is drawn on its own"
    assert len(base64.urlsafe_b64decode(secrets["AIRFLOW_FERNET_KEY"])) == 32, "a Fernet key is 32 bytes, base64url"
    assert out.stat().st_mode & 0o077 == 0, ".env is readable by its owner only"
    again = subprocess.run([str(script), str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


# ---------------------------------------------------------------- the same behaviour as the native scripts
# Variables scripts/env.sh exports that the compose stack sets differently on purpose.
DIFFERS_BY_DESIGN = {
    "AIRFLOW_HOME": "the official image's /opt/airflow, on a volume of its own",
    "AIRFLOW__API__HOST": "the API server listens on the container's interfaces; its published port is bound to 127.0.0.1",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "task processes reach the API server by its service name",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "the postgres service with password auth (scheme and database checked below)",
    "MLFLOW_TRACKING_URI": "the mlflow service, the tracking server scripts/mlflow_server.sh runs natively",
    "PATH": "the image installs into the system Python: no venv",
    "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "not an Airflow 3 option (the DAG processor always runs alone: airflow-dag-processor)",
}
NOT_SET_IN_COMPOSE = {"PATH", "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR"}
# The variables that make scripts/env.sh describe a deployment with services (as `make airflow-ui` does).
SITE_INPUTS = ("TAXI_AIRFLOW_DB", "TAXI_MLFLOW", "TAXI_ONLINE_STORE", "REDIS_HOST", "REDIS_PORT", "KAFKA_BOOTSTRAP_SERVERS")


def test_airflow_environment_agrees_with_scripts_env_sh():
    """Every variable scripts/env.sh exports has the same value in the Airflow containers (the
    checkout's path read as the image's /opt/taxi), unless DIFFERS_BY_DESIGN says why not."""
    compose_env = container_env("airflow-scheduler")
    native = {k: v.replace(str(REPO_ROOT), IMAGE_ROOT) for k, v in native_env(**{k: compose_env[k] for k in SITE_INPUTS}).items()}
    mismatches = {
        name: (value, compose_env.get(name)) for name, value in native.items() if name not in DIFFERS_BY_DESIGN and compose_env.get(name) != value
    }
    assert not mismatches, "scripts/env.sh vs docker-compose.yaml (name: (native, compose)):\n" + "\n".join(
        f"  {k}: {v}" for k, v in mismatches.items()
    )
    for name in DIFFERS_BY_DESIGN:
        if name in native:
            assert compose_env.get(name) != native[name], f"{name} now agrees with scripts/env.sh: drop it from DIFFERS_BY_DESIGN"
        if name not in NOT_SET_IN_COMPOSE:
            assert compose_env.get(name), f"{name} ({DIFFERS_BY_DESIGN[name]}) is not set in the Airflow containers"
    # What must still agree inside the differing ones.
    ours, theirs = urlsplit(compose_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]), urlsplit(native["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (ours.scheme, ours.path, ours.hostname, ours.port) == (theirs.scheme, theirs.path, "postgres", 5432)
    execution = urlsplit(compose_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.path == urlsplit(native["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).path
    api_command = command_of(compose()["services"]["airflow-apiserver"])
    assert (execution.hostname, str(execution.port)) == ("airflow-apiserver", api_command[api_command.index("--port") + 1])
    assert compose_env["AIRFLOW__API__PORT"] == native["AIRFLOW__API__PORT"]
    ours, theirs = urlsplit(compose_env["MLFLOW_TRACKING_URI"]), urlsplit(native["MLFLOW_TRACKING_URI"])
    assert (ours.scheme, ours.port, ours.hostname) == (theirs.scheme, theirs.port, "mlflow"), "the tracking server, by its service name"


# What the Celery variant sets differently from `TAXI_EXECUTOR=celery` natively, on purpose.
CELERY_DIFFERS_BY_DESIGN = {
    "AIRFLOW__CELERY__RESULT_BACKEND": "the postgres service with password auth (scheme and database checked below)",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "each worker is a container with a host name of its own: Airflow's default names it",
}


def test_the_celery_environment_agrees_with_scripts_env_sh():
    """What `TAXI_EXECUTOR=celery` changes in scripts/env.sh's environment (make airflow-ui
    EXECUTOR=celery), the Celery variant sets in every Airflow container, unless
    CELERY_DIFFERS_BY_DESIGN says why not."""
    compose_env = container_env("airflow-worker", compose(**CELERY_ENV))
    inputs = {k: compose_env[k] for k in SITE_INPUTS}
    local, celery = native_env(**inputs), native_env(TAXI_EXECUTOR="celery", **inputs)
    changed = {name: value for name, value in celery.items() if local.get(name) != value and name != "TAXI_EXECUTOR"}
    assert changed.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", "TAXI_EXECUTOR=celery no longer selects the CeleryExecutor"
    assert {"AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__WORKER_CONCURRENCY"} <= set(changed), sorted(changed)
    mismatches = {
        name: (value, compose_env.get(name))
        for name, value in changed.items()
        if name not in CELERY_DIFFERS_BY_DESIGN and compose_env.get(name) != value
    }
    assert not mismatches, "scripts/env.sh (TAXI_EXECUTOR=celery) vs the celery profile (name: (native, compose)):\n" + "\n".join(
        f"  {k}: {v}" for k, v in mismatches.items()
    )
    if "AIRFLOW__CELERY__RESULT_BACKEND" in changed:
        ours, theirs = urlsplit(compose_env["AIRFLOW__CELERY__RESULT_BACKEND"]), urlsplit(changed["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert (ours.scheme, ours.path) == (theirs.scheme, theirs.path) and ours.hostname == "postgres"


def test_every_project_service_gets_the_same_taxi_environment():
    data = compose()
    shared = service_env({"environment": data["x-taxi-env"]})
    for name in PROJECT_SERVICES:
        env = service_env(data["services"][name])
        differing = {k for k, v in shared.items() if env.get(k) != v}
        assert not differing, f"{name} does not carry x-taxi-env's {sorted(differing)}: the code would behave differently there"
    assert dockerfile_assignments("ENV")["TAXI_REPO_ROOT"] == shared["TAXI_REPO_ROOT"] == IMAGE_ROOT


def test_default_ports_agree_with_the_native_scripts():
    """The host ports default to the native defaults, and each service listens inside on that same port."""
    data, raw = compose(), raw_compose()
    for variable, script, service in [
        ("AIRFLOW_PORT", "env.sh", "airflow-apiserver"),
        ("MLFLOW_PORT", "mlflow_server.sh", "mlflow"),
        ("TAXI_SERVE_PORT", "serve.sh", "prediction-service"),
        ("KAFKA_PORT", "kafka.sh", "kafka"),
    ]:
        default = script_default(SCRIPTS / script, variable)
        (port,) = published_ports(raw["services"][service])
        assert port.removeprefix("${BIND_ADDRESS:-127.0.0.1}:").startswith(f"${{{variable}:-{default}}}:"), (
            f"{service}: {port}, scripts/{script} defaults {variable} to {default}"
        )
        container_port = port.rsplit(":", 1)[1]
        if service == "kafka":  # the host's own listener; the services' listener is on the native port
            assert f"PLAINTEXT://:{default}" in service_env(data["services"]["kafka"])["KAFKA_LISTENERS"]
            assert data["x-taxi-env"]["KAFKA_BOOTSTRAP_SERVERS"] == f"kafka:{default}"
            assert f"HOST://:{container_port}" in service_env(data["services"]["kafka"])["KAFKA_LISTENERS"]
        else:
            assert container_port == default, f"{service} listens on {container_port} inside, natively on {default}"
            assert f"localhost:{default}/" in " ".join(data["services"][service]["healthcheck"]["test"]), f"{service}'s health check"
    redis_default = script_default(SCRIPTS / "redis.sh", "REDIS_PORT")
    taxi_env = data["x-taxi-env"]
    assert taxi_env["REDIS_PORT"] == redis_default and f'"redis:{redis_default},' in taxi_env["FEAST_ONLINE_STORE"]
    assert redis_default in data["services"]["redis"]["healthcheck"]["test"]


def native_command(tokens: list[str]) -> dict[str, str | None]:
    """--flag value pairs of a command line (a flag without a value maps to None)."""
    flags, i = {}, 0
    while i < len(tokens):
        if tokens[i].startswith("--"):
            has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
            flags[tokens[i]] = tokens[i + 1] if has_value else None
            i += 2 if has_value else 1
        else:
            i += 1
    return flags


def test_mlflow_server_runs_the_flags_of_scripts_mlflow_server_sh():
    clean = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(SCRIPTS / "mlflow_server.sh"), "command"], capture_output=True, text=True, check=True, env=clean).stdout
    native_tokens, ours_tokens = shlex.split(out), command_of(compose()["services"]["mlflow"])
    assert native_tokens[:2] == ours_tokens[:2] == ["mlflow", "server"]
    native, ours = native_command(native_tokens), native_command(ours_tokens)
    assert set(ours) == set(native), f"flags differ: only native {set(native) - set(ours)}, only compose {set(ours) - set(native)}"
    for flag in ("--serve-artifacts", "--default-artifact-root", "--port", "--workers"):
        assert ours[flag] == native[flag], f"{flag}: compose {ours[flag]!r}, scripts/mlflow_server.sh {native[flag]!r}"
    assert ours["--host"] == "0.0.0.0"
    backend, native_backend = urlsplit(ours["--backend-store-uri"]), urlsplit(native["--backend-store-uri"])
    assert (backend.scheme, backend.path, backend.hostname) == (native_backend.scheme, native_backend.path, "postgres")
    assert ours["--artifacts-destination"] in [v.split(":")[1] for v in compose()["services"]["mlflow"]["volumes"]], "artifacts on a volume"
    allowed = set(ours["--allowed-hosts"].split(","))
    assert set(native["--allowed-hosts"].split(",")) <= allowed, "the host's browser must reach the UI as natively"
    tracking = urlsplit(service_env({"environment": compose()["x-taxi-env"]})["MLFLOW_TRACKING_URI"])
    assert tracking.netloc in allowed and str(tracking.port) == ours["--port"], "the other containers' Host header must be accepted"
    # What the script exports for the server process (`export NAME="${NAME:-default}"`), the service sets.
    exported = re.findall(r'^export (\w+)="\$\{\1:-([^}]*)\}"', (SCRIPTS / "mlflow_server.sh").read_text(), re.M)
    mlflow_env = service_env(compose()["services"]["mlflow"])
    assert {name: mlflow_env.get(name) for name, _ in exported} == dict(exported)


def test_kafka_init_runs_the_topics_command_of_make_services():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^services:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no `services` target"
    topics = re.search(r"\$\(ENV\) (python -m chicago_taxi\.ingest\.topics [^&\n]*)", recipe.group(1))
    assert topics, "`make services` no longer creates the topics with python -m chicago_taxi.ingest.topics"
    assert command_of(compose()["services"]["kafka-init"]) == shlex.split(topics.group(1))


def test_kafka_broker_is_configured_as_scripts_kafka_sh_configures_it():
    script = (SCRIPTS / "kafka.sh").read_text()
    body = re.search(r'cat >"\$props" <<EOF\n(.*?)\nEOF', script, re.S)
    assert body, "scripts/kafka.sh no longer writes server.properties from a here-document"
    native = dict(line.split("=", 1) for line in body.group(1).splitlines() if line and not line.startswith("#"))
    kafka = compose()["services"]["kafka"]
    # The image turns KAFKA_FOO_BAR into foo.bar (___ -> -, __ -> _).
    ours = {
        name.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0").replace("_", ".").replace("\0", "_"): value
        for name, value in service_env(kafka).items()
        if name.startswith("KAFKA_") and name != "KAFKA_HEAP_OPTS"
    }
    # Addresses and paths are the container's; a static controller quorum instead of a bootstrapped one.
    # The map also names the host's listener (HOST).
    by_design = {"listeners", "advertised.listeners", "listener.security.protocol.map", "log.dirs"}
    by_design |= {"controller.quorum.bootstrap.servers", "controller.quorum.voters"}
    differing = {k: (v, ours.get(k)) for k, v in native.items() if k not in by_design and ours.get(k) != v}
    assert not differing, f"broker settings (native, compose): {differing}"
    extra = set(ours) - set(native) - by_design
    assert not extra, f"compose sets broker settings scripts/kafka.sh does not: {extra}"
    assert kafka["image"] == f"apache/kafka:{script_default(SCRIPTS / 'kafka.sh', 'KAFKA_VERSION')}", "the same Kafka version as natively"
    heap = re.search(r"JVM_OPTS=\((-Xmx\S+ -Xms\S+)", script)
    assert heap and service_env(kafka)["KAFKA_HEAP_OPTS"] == heap.group(1)


def test_airflow_components_run_as_scripts_airflow_stack_sh_runs_them():
    script = (SCRIPTS / "airflow_stack.sh").read_text()
    launches = re.finditer(r"^\s*(airflow ([a-z-]+)[^>\n]*?)\s*>", script, re.M)
    native = {match.group(2): shlex.split(match.group(1)) for match in launches}
    data = compose()
    ours = {command_of(data["services"][name])[1]: command_of(data["services"][name]) for name in AIRFLOW_SERVICES if name != "airflow-init"}
    assert set(ours) == set(native) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    for component, tokens in native.items():
        flags, native_flags = native_command(ours[component]), native_command(tokens)
        assert set(flags) == set(native_flags), f"airflow {component}: compose {ours[component]}, native {tokens}"
    health_path = urlsplit(re.search(r'health_url="([^"]+)"', script).group(1)).path
    # ... and the Execution API's warm-up request the script makes after it (its first request builds its routes)
    warm_path = urlsplit(re.search(r'curl [^\n]*"(http://127\.0\.0\.1:\$port/execution/[^"]+)"', script).group(1)).path
    check = " ".join(data["services"]["airflow-apiserver"]["healthcheck"]["test"])
    assert f"http://localhost:8080{health_path}" in check and f"http://localhost:8080{warm_path}" in check, check
    # The scheduler's health server: on, and on the port Airflow serves it (read without importing Airflow: 10 s).
    (airflow_dir,) = importlib.util.find_spec("airflow").submodule_search_locations
    config = yaml.safe_load((Path(airflow_dir) / "config_templates" / "config.yml").read_text())
    port = config["scheduler"]["options"]["scheduler_health_check_server_port"]["default"]
    assert f"http://localhost:{port}/health" in data["services"]["airflow-scheduler"]["healthcheck"]["test"]
    assert service_env(data["x-airflow-common"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    for name, job in [("airflow-triggerer", "TriggererJob"), ("airflow-dag-processor", "DagProcessorJob")]:
        assert f"airflow jobs check --job-type {job}" in data["services"][name]["healthcheck"]["test"][1]


def stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def in_image(path: str, root: Path) -> Path:
    assert path.startswith(IMAGE_ROOT + "/"), path
    return root / path.removeprefix(IMAGE_ROOT + "/")


def test_prediction_service_runs_scripts_serve_sh_on_all_interfaces_without_a_local_redis(tmp_path):
    """deploy/compose/serve.sh then scripts/serve.sh, run with the service's environment and stubs
    for python, bentoml and scripts/redis.sh: what `make serve` runs, bound to 0.0.0.0:3000, and
    no Redis of its own (the redis service is the online store)."""
    root, calls = tmp_path / "taxi", tmp_path / "calls"
    for script in ("scripts/serve.sh", "deploy/compose/serve.sh"):
        (root / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / script, root / script)
    stub(root / "scripts" / "redis.sh", f'echo "redis.sh $*" >> {calls}')
    stub(tmp_path / "bin" / "python", f'echo "python $*" >> {calls}')
    stub(tmp_path / "bin" / "bentoml", f'echo "bentoml $* (in $PWD)" >> {calls}')
    service = compose()["services"]["prediction-service"]
    env = {**container_env("prediction-service"), "TAXI_REPO_ROOT": str(root), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    command = command_of(service)
    assert command[0] == "bash"
    proc = subprocess.run(["bash", str(in_image(command[1], root))], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines()
    assert not [line for line in lines if line.startswith("redis.sh")], f"serve.sh starts a Redis of its own: {lines}"
    assert "python -m chicago_taxi.features.store warm" in lines, "the online store is warmed first, as natively"
    port = published_ports(service)[0].rsplit(":", 1)[1]
    assert lines[-1] == f"bentoml serve bentos/service.py:TaxiFareService --host 0.0.0.0 --port {port} (in {root})"
    assert f"localhost:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def run_celery_service(service_name: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The service's command (deploy/compose/celery.sh) with the container's environment plus `env`
    and a stub airflow: what it ran, and how it ended."""
    root, calls = tmp_path / "taxi", tmp_path / "calls"
    (root / "deploy" / "compose").mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_COMPOSE / "celery.sh", root / "deploy" / "compose")
    stub(tmp_path / "bin" / "airflow", f'echo "airflow $*" >> {calls}')
    data = compose(**env)
    command = command_of(data["services"][service_name])
    assert command[0] == "bash"
    container = {**container_env(service_name, data), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(in_image(command[1], root)), *command[2:]], env=container, capture_output=True, text=True, timeout=30)
    return proc, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("service_name", CELERY_SERVICES)
def test_a_celery_service_refuses_to_start_without_the_celery_executor(service_name, tmp_path):
    """The profile without AIRFLOW_EXECUTOR=CeleryExecutor: the service says what to set instead of
    Airflow's "invalid choice: 'celery'", and starts nothing."""
    proc, calls = run_celery_service(service_name, tmp_path)
    assert proc.returncode != 0 and "AIRFLOW_EXECUTOR=CeleryExecutor" in proc.stderr, proc.stderr
    assert calls == []


def without_defaults(token: str) -> str:
    """A script's token with each ${NAME:-default} read as its default."""
    return re.sub(r"\$\{[A-Za-z0-9_]+:-([^}]*)\}", r"\1", token)


def test_the_worker_runs_airflow_celery_worker_as_scripts_airflow_stack_sh_runs_it(tmp_path):
    """The worker's command line has the native workers' flags (scripts/airflow_stack.sh) but the
    Celery name, which each container's own host name makes unique (celery@<hostname>, the name its
    health check pings); its concurrency is the configured one, as natively. The native workers
    consume Airflow's default queue and taxi_tfx's; here airflow-worker the first, airflow-worker-tfx
    (the TFX image) the second."""
    queues = {}
    for name in ("airflow-worker", TFX_WORKER):
        proc, calls = run_celery_service(name, tmp_path / name, **CELERY_ENV)
        assert proc.returncode == 0, proc.stderr
        (call,) = calls
        ours = shlex.split(call)
        assert ours[:3] == ["airflow", "celery", "worker"]
        queues[name] = native_command(ours)["--queues"]
    script = (SCRIPTS / "airflow_stack.sh").read_text()
    native_line = re.search(r"(airflow celery worker [^>\n]*?)\s*>", script)
    assert native_line, "scripts/airflow_stack.sh starts no `airflow celery worker`"
    native = native_command([without_defaults(token) for token in shlex.split(native_line.group(1))])
    assert set(native_command(ours)) == set(native) - {"--celery-hostname"}, f"compose {ours}, native {native_line.group(1)}"
    (airflow_dir,) = importlib.util.find_spec("airflow").submodule_search_locations
    airflow_config = yaml.safe_load((Path(airflow_dir) / "config_templates" / "config.yml").read_text())
    default_queue = airflow_config["operators"]["options"]["default_queue"]["default"]
    tfx_queue = load_settings_without_env().tfx_queue
    assert queues == {"airflow-worker": default_queue, TFX_WORKER: tfx_queue}, "the default queue, and the one taxi_tfx's components take"
    assert native["--queues"].split(",") == [default_queue, tfx_queue], "natively every worker takes both (the bubblewrap runtime serves)"
    data = compose(**CELERY_ENV)
    concurrency = service_env(data["x-airflow-common"])["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    assert native_command(ours)["--concurrency"] == concurrency == native_env(TAXI_EXECUTOR="celery")["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
    check = " ".join(data["services"]["airflow-worker"]["healthcheck"]["test"])
    assert f"--app {CELERY_APP} inspect ping" in check and '-d "celery@${HOSTNAME}"' in check


def test_flower_serves_on_the_port_the_compose_file_publishes_and_checks(tmp_path):
    proc, calls = run_celery_service("flower", tmp_path, **CELERY_ENV)
    assert proc.returncode == 0, proc.stderr
    (call,) = calls
    flags = native_command(shlex.split(call))
    assert shlex.split(call)[:3] == ["airflow", "celery", "flower"] and flags["--hostname"] == "0.0.0.0"
    flower = compose(**CELERY_ENV)["services"]["flower"]
    (port,) = published_ports(flower)
    assert port.rsplit(":", 1)[1] == flags["--port"]
    assert f"http://localhost:{flags['--port']}/healthcheck" in flower["healthcheck"]["test"]


def test_the_celery_commands_and_health_check_work_with_the_installed_airflow(tmp_path):
    """Airflow's own CLI parser, with the CeleryExecutor, accepts the worker's and Flower's flags (a
    misspelt flag fails here, not in a restart loop), and the app the health checks ping imports
    with the pinned celery and provider."""
    script = (DEPLOY_COMPOSE / "celery.sh").read_text()
    lines = {
        kind: shlex.split(re.search(rf"^\s*{kind}\) exec (airflow celery {kind}[^;]*);;", script, re.M).group(1)) for kind in ("worker", "flower")
    }
    argv = {kind: [without_defaults(token) for token in tokens[1:]] for kind, tokens in lines.items()}
    check = f"""
import json, sys
from airflow.cli import cli_parser
parser = cli_parser.get_parser()
for argv in json.loads(sys.argv[1]).values():
    parser.parse_args(argv)
import {CELERY_APP.rsplit(".", 1)[0]} as module
assert module.app.main
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([sys.executable, "-c", check, json.dumps(argv)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_airflow_init_migrates_the_db_and_hands_every_shared_volume_over(tmp_path):
    data = compose()
    init = data["services"]["airflow-init"]
    calls, root = tmp_path / "calls", tmp_path / "taxi"
    stub(tmp_path / "bin" / "airflow", f'echo "airflow $*" >> {calls}; [ "$1" != version ] || echo 3.3.2')
    for tool in ("chown", "chmod"):
        stub(tmp_path / "bin" / tool, f'echo "{tool} $*" >> {calls}')
    # Every path of the container, moved under tmp_path.
    env = {k: v.replace(IMAGE_ROOT, str(root)).replace("/opt/airflow", str(tmp_path / "airflow")) for k, v in container_env("airflow-init").items()}
    python_bin = Path(sys.executable).parent  # the image's python, with the project installed
    env = {**env, "TAXI_MLFLOW_ARTIFACTS": str(tmp_path / "mlflow-artifacts"), "PATH": f"{tmp_path / 'bin'}:{python_bin}:/usr/bin:/bin"}
    assert init["user"] == "0:0" and command_of(init)[0] == "bash"
    (root / "deploy" / "compose").mkdir(parents=True)
    shutil.copy(DEPLOY_COMPOSE / "airflow-init.sh", root / "deploy" / "compose")
    proc = subprocess.run(["bash", str(in_image(command_of(init)[1], root))], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines()
    assert "airflow db migrate" in lines
    (chown,) = [line.split()[3:] for line in lines if line.startswith("chown -R")]
    assert lines[[line.startswith("chown") for line in lines].index(True) - 1] == "airflow db migrate", "ownership after the migration"
    mapping = {IMAGE_ROOT: str(root), "/opt/airflow": str(tmp_path / "airflow"), "/mlflow/artifacts": str(tmp_path / "mlflow-artifacts")}
    targets = set()
    for volume in data["x-airflow-common"]["volumes"]:
        target = volume.split(":")[1]
        for prefix, moved in mapping.items():
            if target.startswith(prefix):
                target = moved + target.removeprefix(prefix)
        targets.add(target)
    assert set(chown) == targets, "airflow-init hands over exactly the shared volumes"
    assert f"chown -R {init['environment']['AIRFLOW_UID']}:0" in "\n".join(lines)
    # The UI password is made here, owner-only, and never printed (the api-server would print one it made).
    passwords = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    secret = json.loads(passwords.read_text())["admin"]
    assert passwords.stat().st_mode & 0o777 == 0o600 and f"chmod 600 {passwords}" in lines
    assert secret not in proc.stdout + proc.stderr
    # Without the JWT secret it stops before touching anything.
    env.pop("AIRFLOW__API_AUTH__JWT_SECRET")
    calls.unlink()
    assert subprocess.run(["bash", str(in_image(command_of(init)[1], root))], env=env, capture_output=True).returncode != 0
    assert not calls.exists()


def test_state_the_code_writes_lands_on_volumes(monkeypatch):
    """Every directory plugins/chicago_taxi writes, resolved with the Airflow containers'
    environment, lies on a volume: the image's own files are read-only and not kept."""
    from chicago_taxi.core import config

    env = container_env("airflow-scheduler")
    for name in list(os.environ):
        if name.startswith(("TAXI_", "MLFLOW_", "BENTOML_", "REDIS_", "KAFKA_", "FEAST_", "AIRFLOW")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    settings = config.load_settings()
    mounts = [volume.split(":")[1] for volume in compose()["x-airflow-common"]["volumes"]]
    written = {
        "work_dir": settings.work_dir,
        "reports_dir": settings.reports_dir,
        "logs_dir": settings.logs_dir,
        "bentoml_home": settings.bentoml_home,
        "feast_dir": settings.feast_dir,
        "features_dir": settings.features_dir,
        "monitoring_dir": settings.monitoring_dir,
        "monitoring_reports_dir": settings.monitoring_reports_dir,
        "AIRFLOW_HOME": Path(env["AIRFLOW_HOME"]),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]),
    }
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://")):  # a tracking server keeps them otherwise
        written["mlflow_artifacts_dir"] = settings.mlflow_artifacts_dir
    outside = {name: str(path) for name, path in written.items() if not any(path.is_relative_to(mount) for mount in mounts)}
    assert not outside, f"written outside the volumes {mounts}: {outside}"
    assert settings.repo_root == Path(IMAGE_ROOT) and settings.online_store == "redis" and settings.redis_address == "redis:6379"


# ---------------------------------------------------------------- the image
def test_dockerfile_builds_the_project_image_as_the_official_airflow_user():
    instructions = dockerfile_instructions()
    froms = [args for kind, args in instructions if kind == "FROM"]
    assert froms == ["python:3.11-slim-bookworm"], "one stage, on Python 3.11 as the venv"
    uv_pin = re.search(r"^uv==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert uv_pin and dockerfile_assignments("ARG")["UV_VERSION"] == uv_pin.group(1), "the uv requirements.txt pins"
    runs = [args for kind, args in instructions if kind == "RUN"]
    assert any("--mount=type=cache" in run and "uv pip install --system" in run and "-r /opt/taxi/requirements.txt" in run for run in runs)
    assert any("uv pip install --system --no-deps --editable ." in run for run in runs), "the project's package, as scripts/setup_venv.sh"
    assert [args for kind, args in instructions if kind == "USER"] == ["50000:0"]
    assert not [kind for kind, _ in instructions if kind in ("HEALTHCHECK", "ENTRYPOINT")], "compose defines health checks and commands"
    env = dockerfile_assignments("ENV")
    assert env["AIRFLOW_HOME"] == "/opt/airflow" and env["TAXI_REPO_ROOT"] == IMAGE_ROOT and env["PYTHONPATH"] == f"{IMAGE_ROOT}/plugins"
    copied = copied_sources()
    needed = {
        "dags",
        "plugins",
        "config",
        "feature_repo",
        "expectations",
        "bentos",
        "data",
        "scripts",
        "pyproject.toml",
        "README.md",
        "deploy/compose",
    }
    assert needed <= copied, f"the image lacks {needed - copied}"
    for name in copied:
        assert (REPO_ROOT / name).exists(), f"COPY {name}: not in the repository"
    # Named volumes start with the ownership of the image's directory: each mount point is created
    # and handed to uid 50000, group 0, group-writable.
    prepared = " ".join(run for run in runs if "useradd" in run)
    for name in PROJECT_SERVICES:
        for volume in compose()["services"][name].get("volumes") or []:
            target = volume.split(":")[1]
            assert target in prepared.split(), f"{name} mounts a volume on {target}, which the Dockerfile does not prepare"
    assert "--uid 50000 --gid 0" in prepared and "chown -R 50000:0" in prepared and "chmod -R g+rwX" in prepared


def test_dockerignore_keeps_runtime_state_and_secrets_out_of_the_image():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for required in (".venv", "var", "mlflow", "logs", "reports", ".git", ".env", "**/__pycache__"):
        assert required in patterns, f".dockerignore must exclude {required}"
    excluded = [pattern for pattern in patterns if not pattern.startswith("!") and not pattern.startswith("**/")]
    # The TFX image is built from the same context (the repository root), under the same .dockerignore.
    assert not (TFX_DOCKERFILE.parent / "Dockerfile.dockerignore").exists()
    everything = copied_sources() | copied_sources(TFX_DOCKERFILE)
    lost = {path for path in everything for pattern in excluded if path == pattern or path.startswith(pattern + "/")}
    assert not lost, f"the Dockerfile copies what .dockerignore leaves out: {lost}"
    # Inside what it copies, only what the image must not carry is left out.
    meant = {"deploy/compose/compose-config", "expectations/gx/uncommitted"}
    carved = {pattern for path in copied_sources() for pattern in excluded if pattern.startswith(path + "/")} - meant
    assert not carved, f".dockerignore leaves out part of what the Dockerfile copies: {carved}"


def test_postgres_creates_every_database_the_services_use():
    data = compose()
    postgres = service_env(data["services"]["postgres"])
    urls = [service_env(data["x-airflow-common"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]]
    mlflow = command_of(data["services"]["mlflow"])
    urls.append(mlflow[mlflow.index("--backend-store-uri") + 1])
    init_scripts = [volume.split(":")[0] for volume in data["services"]["postgres"]["volumes"] if "/docker-entrypoint-initdb.d/" in volume]
    created = {postgres["POSTGRES_DB"]}
    for script in init_scripts:
        created |= set(re.findall(r"CREATE DATABASE (\w+)", (REPO_ROOT / script).read_text(), re.I))
    for url in urls:
        parts = urlsplit(url)
        assert parts.path.lstrip("/") in created, f"{url}: database not created by the postgres service"
        assert (parts.username, parts.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert "POSTGRES_HOST_AUTH_METHOD" not in postgres, "password authentication, as the image defaults to"
    assert data["services"]["postgres"]["image"].startswith("postgres:17")


def test_airflow_conn_of_the_kafka_trigger_is_valid_json():
    value = service_env(compose()["x-airflow-common"])["AIRFLOW_CONN_TAXI_KAFKA_TRIGGER"]
    assert json.loads(value)["extra"]["bootstrap.servers"] == service_env({"environment": compose()["x-taxi-env"]})["KAFKA_BOOTSTRAP_SERVERS"]


# ---------------------------------------------------------------- the TFX image (runtime/tfx/Dockerfile)
def test_the_tfx_runtime_stage_installs_exactly_the_recipe_scripts_tfx_runtime_sh_builds():
    """The image's `runtime` stage and scripts/tfx_runtime.sh make one runtime from one recipe,
    runtime/tfx/: the same Debian release, the Debian packages of apt-packages.txt and the venv of
    requirements.lock at the same path, and nothing installed beside them."""
    stages = dockerfile_stages(TFX_DOCKERFILE)
    runtime, script = stages["runtime"], (SCRIPTS / "tfx_runtime.sh").read_text()
    assert runtime[0] == ("FROM", f"debian:{script_default(SCRIPTS / 'tfx_runtime.sh', 'TAXI_TFX_DEBIAN_RELEASE')}-slim AS runtime")
    assert [args for kind, args in runtime if kind == "COPY"] == ["runtime/tfx/apt-packages.txt runtime/tfx/requirements.lock /opt/"]
    assert 'RECIPE="$ROOT/runtime/tfx"' in script and '"$RECIPE/apt-packages.txt"' in script and '"$RECIPE/requirements.lock"' in script
    runs = " ; ".join(re.sub(r"\s+", " ", args) for kind, args in runtime if kind == "RUN")
    # apt-get installs the file's packages and no other; pip installs the lock and nothing else.
    assert re.findall(r"\S+ apt-get install[^&]*", runs) == ["xargs apt-get install -y --no-install-recommends "]
    assert "grep -v '^#' /opt/apt-packages.txt | xargs apt-get install" in runs
    assert re.findall(r"pip install[^;&]*", runs) == ["pip install --no-cache-dir --no-input -r /opt/requirements.lock"]
    venv = re.search(r"^VENV=(\S+)$", script, re.M).group(1)
    assert f"python3 -m venv {venv} && {venv}/bin/pip install" in runs, "the script's venv path"
    env = dockerfile_assignments("ENV", runtime)
    assert env["TAXI_TFX_RUNTIME"] == "image" and env["PATH"].startswith(f"{venv}/bin:"), "scripts/tfx_runtime.sh runs in place here"


def test_the_tfx_worker_is_the_runtime_with_the_project_images_airflow_and_code():
    """Stage `worker`: the runtime, plus the project image's Python 3.11 (Airflow and every pin of
    requirements.txt, the Kubernetes extras when built with them) and /opt/taxi copied from it, its
    user and state directories made by the root Dockerfile's own command, its environment (PATH
    without the TFX venv: `python` is Airflow's), its user."""
    stages = dockerfile_stages(TFX_DOCKERFILE)
    worker = stages["worker"]
    assert worker[0] == ("FROM", "runtime AS worker")
    (arg,) = [args for kind, args in stages[""] if kind == "ARG"]
    name, _, default = arg.partition("=")
    assert stages["project"] == [("FROM", f"${{{name}}} AS project")], "the project image, replaceable by a named context"
    assert default == env_example()["TAXI_IMAGE"], "by default the project image compose builds"
    copies = sorted(tuple(shlex.split(args)) for kind, args in worker if kind == "COPY")
    assert copies == [("--from=project", IMAGE_ROOT, IMAGE_ROOT), ("--from=project", "/usr/local", "/usr/local")]
    (prepare,) = [args for kind, args in worker if kind == "RUN"]
    (root_prepare,) = [args for kind, args in dockerfile_instructions() if kind == "RUN" and "useradd" in args]
    first, _, rest = prepare.partition("&&")
    assert first.split() == ["ldconfig"] and rest.split() == root_prepare.split(), "the project image's user and directories, made alike"
    project_env = dockerfile_assignments("ENV")
    worker_env = dockerfile_assignments("ENV", stages["runtime"] + worker)
    differing = {k: (v, worker_env.get(k)) for k, v in project_env.items() if worker_env.get(k) != v}
    assert not differing, f"the worker's environment differs from the project image's (project, worker): {differing}"
    assert worker_env["TAXI_TFX_RUNTIME"] == "image" and worker_env["PATH"].split(":")[0] == "/usr/local/bin"
    assert "tfx-venv" not in worker_env["PATH"]
    for kind in ("USER", "WORKDIR"):
        assert [a for k, a in worker if k == kind] == [a for k, a in dockerfile_instructions() if k == kind], kind


def test_the_tfx_worker_service_runs_the_tfx_image_on_the_tfx_queue():
    """airflow-worker-tfx builds the `worker` stage from the repository root, given as the named
    context `project` the image the other Airflow services run (a service reference: Compose builds
    that one first, and the context replaces the Dockerfile's stage of that name); otherwise it is
    airflow-worker (settings, volumes, health check, dependencies, profile) on another queue."""
    data = compose(**CELERY_ENV)
    tfx, worker = data["services"][TFX_WORKER], data["services"]["airflow-worker"]
    build = tfx["build"]
    assert build["context"] == "." and REPO_ROOT / build["dockerfile"] == TFX_DOCKERFILE and build["target"] == "worker"
    kind, _, source = build["additional_contexts"]["project"].partition(":")
    assert kind == "service" and data["services"][source]["build"] == data["x-project-image"]["build"]
    assert data["services"][source]["image"] == data["x-project-image"]["image"] and "project" in dockerfile_stages(TFX_DOCKERFILE)
    assert tfx["image"] == env_example()["TAXI_TFX_IMAGE"] != worker["image"]
    for key in ("environment", "volumes", "user", "healthcheck", "depends_on", "profiles", "restart", "init"):
        assert tfx[key] == worker[key], f"{TFX_WORKER}'s {key} is not airflow-worker's"
    assert command_of(tfx) == [*command_of(worker), load_settings_without_env().tfx_queue]
