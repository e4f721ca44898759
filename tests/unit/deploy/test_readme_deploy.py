"""The README's "Deploy" commands are the ones the deployment checks validate: its `helm install`
of the project's chart renders (with exactly those flags) into objects the Kubernetes API schema
accepts; its `kubectl create secret` lines make every Secret, with every key, that the chart and
the Airflow values reference; its Airflow chart version and values file are the checked ones; its
Compose commands use the generator, the service and the password path the compose file has; its
CI commands are the Makefile's and the workflow's."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
README = REPO_ROOT / "README.md"
AIRFLOW_VALUES = REPO_ROOT / "deploy" / "helm" / "airflow-values.yaml"
AIRFLOW_CELERY_VALUES = REPO_ROOT / "deploy" / "helm" / "airflow-values-celery.yaml"
CHART_KEYS = ("postgres-password", "reload-token")  # the keys the chart's Secret holds (templates/_helpers.tpl)
# The key each secret of the official Airflow chart is read with (the chart's documented keys).
AIRFLOW_SECRET_KEYS = {
    ("data", "metadataSecretName"): "connection",
    ("fernetKeySecretName",): "fernet-key",
    ("apiSecretKeySecretName",): "api-secret-key",
    ("jwtSecretName",): "jwt-secret",
}


def deploy_section() -> str:
    text = README.read_text()
    match = re.search(r"^## Deploy\n(.*?)^## ", text, re.S | re.M)
    assert match, 'README.md has no "## Deploy" section'
    return match.group(1)


def commands(subsection: str) -> list[list[str]]:
    """The commands of the bash blocks under `### <subsection>` of the Deploy section, tokenized
    (comments dropped, `&&` chains split)."""
    match = re.search(rf"^### {re.escape(subsection)}\n(.*?)(?=^### |\Z)", deploy_section(), re.S | re.M)
    assert match, f"README Deploy has no ### {subsection}"
    found = []
    for block in re.findall(r"```bash\n(.*?)```", match.group(1), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                found.append(tokens[:cut])
                tokens = tokens[cut + 1 :]
    assert found, f"no command in README Deploy / {subsection}"
    return found


def flag_values(tokens: list[str], flag: str) -> list[str]:
    out = []
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            out.append(tokens[i + 1])
        elif token.startswith(flag + "="):
            out.append(token.split("=", 1)[1])
    return out


@pytest.fixture(scope="module")
def helm() -> str:
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "go_tool.sh"), "path", "helm"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"helm could not be built by scripts/go_tool.sh: {proc.stderr[-2000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def secrets_created() -> dict[str, set[str]]:
    made: dict[str, set[str]] = {}
    for tokens in commands("Kubernetes (Helm)"):
        if tokens[:1] == ["kubectl"] and "secret" in tokens and "generic" in tokens:
            name = tokens[tokens.index("generic") + 1]
            made[name] = {value.split("=", 1)[0] for value in flag_values(tokens, "--from-literal")}
    return made


def test_the_readmes_helm_install_renders_into_valid_kubernetes_objects(helm, tmp_path):
    (install,) = [t for t in commands("Kubernetes (Helm)") if t[:3] == ["helm", "install", "chicago-taxi"]]
    assert install[3] == "deploy/helm/chicago-taxi"
    # `helm install` asks the cluster for its version; `helm template` is told one (it defaults to 1.20).
    proc = subprocess.run([helm, "template", *install[2:], "--kube-version", "1.34.0"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, f"`helm template` with the README's flags failed: {proc.stderr[-3000:]}"
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(proc.stdout)
    validate = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", "1.34.0", str(rendered)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-2000:]
    images = {c["image"] for o in objects for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])}
    repository, tag = flag_values(install, "--set")[0].split("=")[1], flag_values(install, "--set")[1].split("=")[1]
    assert images == {f"{repository}:{tag}"}, images
    existing = next(v.split("=", 1)[1] for v in flag_values(install, "--set") if v.startswith("secrets.existingSecret="))
    assert not [o for o in objects if o["kind"] == "Secret"], "with an existing secret the chart must not render its own"
    assert existing in proc.stdout


def test_the_readmes_secrets_are_every_secret_and_key_the_charts_read():
    made = secrets_created()
    (install,) = [t for t in commands("Kubernetes (Helm)") if t[:3] == ["helm", "install", "chicago-taxi"]]
    existing = next(v.split("=", 1)[1] for v in flag_values(install, "--set") if v.startswith("secrets.existingSecret="))
    assert made.get(existing) == set(CHART_KEYS), f"the chart reads {CHART_KEYS} from {existing}; the README makes {made.get(existing)}"
    values = yaml.safe_load(AIRFLOW_VALUES.read_text())
    for path, key in AIRFLOW_SECRET_KEYS.items():
        name = values
        for part in path:
            name = name[part]
        assert made.get(name) == {key}, f"airflow-values.yaml reads {key} from Secret {name}; the README makes {made.get(name)}"
    # The Celery overlay's broker Secret, where the README shows the Celery install.
    broker = yaml.safe_load(AIRFLOW_CELERY_VALUES.read_text())["data"]["brokerUrlSecretName"]
    if any("deploy/helm/airflow-values-celery.yaml" in t for t in commands("Kubernetes (Helm)")):
        assert made.get(broker) == {"connection"}, (
            f"airflow-values-celery.yaml reads connection from Secret {broker}; the README makes {made.get(broker)}"
        )


def test_the_readmes_airflow_install_is_the_checked_chart_version_and_values():
    installs = [t for t in commands("Kubernetes (Helm)") if t[:3] == ["helm", "install", "airflow"]]
    # The default install, and (if the README shows it) the CeleryExecutor one: the overlay after the base file.
    (install,) = [t for t in installs if flag_values(t, "-f") == ["deploy/helm/airflow-values.yaml"]]
    for other in installs:
        assert other is install or flag_values(other, "-f") == ["deploy/helm/airflow-values.yaml", "deploy/helm/airflow-values-celery.yaml"], other
    header = AIRFLOW_VALUES.read_text()
    (version,) = flag_values(install, "--version")
    assert f"--version {version}" in header, "the README installs another chart version than airflow-values.yaml is written for"
    values = yaml.safe_load(header)
    sets = dict(v.split("=", 1) for v in flag_values(install, "--set"))
    chart_install = next(t for t in commands("Kubernetes (Helm)") if t[:3] == ["helm", "install", "chicago-taxi"])
    chart_sets = dict(v.split("=", 1) for v in flag_values(chart_install, "--set"))
    assert (sets["images.airflow.repository"], sets["images.airflow.tag"]) == (chart_sets["image.repository"], chart_sets["image.tag"]), (
        "Airflow and the project's workloads must run the same image"
    )
    assert values["executor"] in ("KubernetesExecutor", "CeleryExecutor")


def test_the_readmes_compose_commands_match_the_compose_file(tmp_path):
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    steps = commands("Compose")
    generator = steps[0][0]
    assert (REPO_ROOT / generator).is_file(), generator
    # The generator, run as printed in a copy of the checkout: .env with every secret filled, mode 600.
    for name in (".env.example", generator):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    proc = subprocess.run(["bash", generator], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    required = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yaml").read_text()))
    filled = {k for k, _, v in (line.partition("=") for line in env_file.read_text().splitlines()) if v.strip() and not k.startswith("#")}
    assert required <= filled, f"secrets the compose file requires but the generated .env leaves empty: {sorted(required - filled)}"
    for secret in required:
        value = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines() if line.startswith(f"{secret}="))
        assert value not in proc.stdout + proc.stderr, f"generate-env.sh printed {secret}"
    assert [s[:3] for s in steps[1:3]] == [["docker", "compose", "up"], ["docker", "compose", "ps"]]
    (read_password,) = [s for s in steps if s[:3] == ["docker", "compose", "exec"]]
    service, path = read_password[3], read_password[-1]
    assert service in compose["services"]
    home = compose["services"][service].get("environment", {}).get("AIRFLOW_HOME") or compose["x-airflow-common"]["environment"]["AIRFLOW_HOME"]
    assert path == f"{home}/simple_auth_manager_passwords.json.generated", path


def test_the_readmes_ci_commands_are_make_targets_the_workflow_runs():
    steps = commands("CI")
    workflow = (REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    for tokens in steps:
        assert tokens[0] == "make", tokens
        assert re.search(rf"^{re.escape(tokens[1])}:", makefile, re.M), f"no Makefile target {tokens[1]}"
        assert f"run: make {tokens[1]}" in workflow, f"the workflow does not run make {tokens[1]}"


def test_the_readme_runs_taxi_tfx_on_the_tfx_image_in_compose_and_on_kubernetes():
    """Compose: the celery profile with the CeleryExecutor brings up airflow-worker-tfx. Kubernetes:
    the TFX image is built from runtime/tfx/Dockerfile's `worker` stage on the project image the
    Airflow install runs, tagged as airflow-values.yaml's extraEnv names it (TAXI_TFX_IMAGE, for the
    KubernetesExecutor's pods), both are pushed, and the Celery install runs the TFX image."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    steps = commands("Compose")
    (up,) = [s for s in steps if "--profile" in s]
    assert up[0] == "AIRFLOW_EXECUTOR=CeleryExecutor" and up[1:4] == ["docker", "compose", "--profile"] and "--build" in up
    (profile,) = flag_values(up, "--profile")
    (ps,) = [s for s in steps if s[:3] == ["docker", "compose", "ps"] and len(s) > 3]
    assert compose["services"][ps[3]]["profiles"] == [profile] and compose["services"][ps[3]]["build"]["target"] == "worker"

    k8s = commands("Kubernetes (Helm)")
    installs = [t for t in k8s if t[:3] == ["helm", "install", "airflow"]]
    (base,) = [t for t in installs if flag_values(t, "-f") == ["deploy/helm/airflow-values.yaml"]]
    sets = dict(v.split("=", 1) for v in flag_values(base, "--set"))
    project_image = f"{sets['images.airflow.repository']}:{sets['images.airflow.tag']}"
    extra_env = yaml.safe_load(yaml.safe_load(AIRFLOW_VALUES.read_text())["extraEnv"])
    (template,) = [e["value"] for e in extra_env if e["name"] == "TAXI_TFX_IMAGE"]
    tfx_image = re.sub(r"\{\{ \.Values\.(images\.airflow\.\w+) \}\}", lambda m: sets[m.group(1)], template)
    builds = [t for t in k8s if t[:2] == ["docker", "build"]]
    (tfx_build,) = [t for t in builds if flag_values(t, "-f")]
    assert flag_values(tfx_build, "-f") == ["runtime/tfx/Dockerfile"] and flag_values(tfx_build, "--target") == ["worker"]
    assert flag_values(tfx_build, "-t") == [tfx_image] and flag_values(tfx_build, "--build-arg") == [f"PROJECT_IMAGE={project_image}"]
    (project_build,) = [t for t in builds if t is not tfx_build]
    assert flag_values(project_build, "-t") == [project_image]
    assert flag_values(project_build, "--build-arg") == ["EXTRA_REQUIREMENTS=deploy/requirements-kubernetes.txt"]
    assert {t[2] for t in k8s if t[:2] == ["docker", "push"]} == {project_image, tfx_image}
    for celery in (t for t in installs if t is not base):
        celery_sets = dict(v.split("=", 1) for v in flag_values(celery, "--set"))
        assert f"{celery_sets['images.airflow.repository']}:{celery_sets['images.airflow.tag']}" == tfx_image, celery
