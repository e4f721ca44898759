"""The CI workflow (.github/workflows/ci.yml), checked against what it claims to run.

- actionlint (scripts/go_tool.sh builds it) over every workflow, with shellcheck on the `run:`
  blocks: shellcheck is installed from Debian's packages when missing (never a skip), and a
  planted shell error and a planted expression error must fail it;
- the test job runs the README's test command, the one `.ci/run` runs, unfiltered;
- every cache path is the one the scripts use, evaluated from the scripts themselves (uv's cache
  dir, scripts/kafka.sh's jar cache and Maven's repository, scripts/go_tool.sh's binaries), and
  the keys follow what decides each cache's content;
- read-only permissions, timeouts, cancel-in-progress, pinned actions, artifacts on failure.

Each check returns its problems; `test_each_check_catches_a_planted_violation` plants one
violation per check in a copy of the workflow and expects a new problem.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from fixtures.env import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
SCRIPTS = REPO_ROOT / "scripts"
# Paths in the workflow start with `~`; the scripts' defaults are evaluated under this home.
HOME = "/home/ci-runner"
RUNNER_TEMP = "/home/runner/work/_temp"
# The oldest major of each action that runs on Node 24 (GitHub retires the Node 20 runtime).
MIN_MAJOR = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/setup-java": 5,
    "actions/setup-go": 6,
    "actions/cache": 5,
    "actions/upload-artifact": 6,
}
# PYTEST_ADDOPTS may say where files go, never which tests run.
ALLOWED_PYTEST_OPTIONS = ("--basetemp=", "--junitxml=", "--durations=", "-ra", "-v")


# ---------------------------------------------------------------- reading the workflow
def load(path: Path = CI) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(wf: dict) -> dict:
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the bare key `on` as true
    return {on: None} if isinstance(on, str) else dict(on or {})


def job_steps(wf: dict, job: str) -> list[dict]:
    return list((wf.get("jobs", {}).get(job) or {}).get("steps") or [])


def uses(step: dict, action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def step_env(wf: dict, job: str, step: dict) -> dict[str, str]:
    """The environment a step sees from the workflow file (workflow, job, step levels)."""
    return {**(wf.get("env") or {}), **((wf["jobs"].get(job) or {}).get("env") or {}), **(step.get("env") or {})}


def expand(value: str, outputs: dict[str, str]) -> str:
    """A workflow path as the runner sees it: `~` is the home, step outputs substituted."""
    value = re.sub(r"\$\{\{\s*steps\.versions\.outputs\.(\w+)\s*\}\}", lambda m: outputs.get(m.group(1), f"<no output {m.group(1)}>"), value)
    return HOME + value[1:] if value.startswith("~") else value


def runner_value(value: str) -> str:
    """A value with `${{ runner.temp }}` as on a hosted runner (other expressions kept whole)."""
    return re.sub(r"\$\{\{\s*runner\.temp\s*\}\}", RUNNER_TEMP, str(value))


def cache_steps(wf: dict, job: str) -> list[dict]:
    return [s for s in job_steps(wf, job) if uses(s, "actions/cache")]


def cache_paths(step: dict) -> list[str]:
    return [line.strip() for line in str((step.get("with") or {}).get("path", "")).splitlines() if line.strip()]


# ---------------------------------------------------------------- what the repository says
def readme_test_commands(readme: str) -> list[str]:
    """The command(s) of the README's "The two commands" block that run pytest (one expected)."""
    section = readme.split("## The two commands", 1)[-1]
    block = re.search(r"```\w*\n(.*?)```", section, re.S)
    lines = block.group(1).splitlines() if block else []
    return [line.split("#", 1)[0].strip() for line in lines if "#" in line and "pytest" in line.split("#", 1)[1]]


def readme_ci_run_command(readme: str) -> str | None:
    """What the README says `.ci/run` runs."""
    stated = re.search(r"`\.ci/run` runs exactly\s+`([^`]+)`", readme)
    return stated.group(1) if stated else None


def ci_run_commands(text: str) -> list[str]:
    """The commands .ci/run runs besides `set` and `cd` to the checkout (one expected)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [line for line in lines if not line.startswith(("set ", "cd "))]


def is_test_step(step: dict, t: Truth) -> bool:
    return str(step.get("run", "")).strip() in (*readme_test_commands(t.readme), ".ci/run")


def makefile_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))


def script_values(script: Path, names: list[str]) -> dict[str, str]:
    """The script's own top-level assignments of `names`, evaluated by bash in a clean environment
    (HOME=HOME, no TAXI_*/XDG_*/version overrides): the defaults the script really uses."""
    text = script.read_text()
    lines = []
    for name in names:
        found = re.findall(rf"^{name}=.*$", text, re.M)
        assert len(found) == 1, f"{script.name}: one top-level assignment of {name}, found {found}"
        lines.append(found[0])
    program = "\n".join(lines + [f'printf "%s\\0" "${name}"' for name in names])
    out = subprocess.run(["bash", "-c", program], env={"HOME": HOME, "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    return dict(zip(names, out.stdout.split("\0")[:-1]))


def uv_binary() -> str:
    """uv as scripts/setup_venv.sh finds it: on PATH, else in the user base of the Python."""
    found = shutil.which("uv")
    if found:
        return found
    user_base = subprocess.run([sys.executable, "-m", "site", "--user-base"], capture_output=True, text=True).stdout.strip()
    candidate = Path(user_base) / "bin" / "uv"
    if not candidate.exists():
        pytest.fail("uv is not installed (scripts/setup_venv.sh installs it: `make venv`)", pytrace=False)
    return str(candidate)


def run_versions_step(wf: dict, tmp: Path) -> dict[str, str]:
    """Runs the test job's `versions` step here, as the runner would, and reads its outputs."""
    step = next((s for s in job_steps(wf, "test") if s.get("id") == "versions"), None)
    if step is None:
        return {}
    output = tmp / "github_output"
    output.write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": HOME, "GITHUB_OUTPUT": str(output)}
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"the versions step fails here: {proc.stderr}"
    return dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)


@dataclass(frozen=True)
class Truth:
    """What the repository says, against which the workflow is checked."""

    readme: str
    ci_run: str
    makefile: str
    uv_cache: str  # `uv cache dir` under HOME
    kafka_versions: dict[str, str]  # kafka, log4j, slf4j, from scripts/kafka.sh
    kafka_cache: str  # scripts/kafka.sh's jar cache (libs/ and the stamp)
    maven_repository: str  # where the `mvn` of scripts/kafka.sh downloads to
    go_bin: str  # scripts/go_tool.sh's binaries
    python: str  # scripts/setup_venv.sh's Python version
    java: str  # the JRE scripts/kafka.sh installs
    apt_packages: dict[str, str]  # package -> the script that would apt-get it
    outputs: dict[str, str]  # what the workflow's versions step outputs here


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> Truth:
    kafka_sh = (SCRIPTS / "kafka.sh").read_text()
    kafka = script_values(SCRIPTS / "kafka.sh", ["KAFKA_VERSION", "LOG4J_VERSION", "SLF4J_VERSION", "cache"])
    go_tool = SCRIPTS / "go_tool.sh"
    assert 'bin="$cache/bin/' in go_tool.read_text(), "scripts/go_tool.sh keeps its binaries in $cache/bin"
    # mvn's local repository is ~/.m2/repository unless the command line or settings move it.
    assert re.search(r"^\s*if ! mvn ", kafka_sh, re.M), "scripts/kafka.sh fetches the jars with mvn"
    assert not re.search(r"maven\.repo\.local|mvn[^\n]* (-s|--settings|-gs) ", kafka_sh), "scripts/kafka.sh moved Maven's repository"
    uv_env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "XDG_"))} | {"HOME": HOME}
    uv_cache = subprocess.run([uv_binary(), "cache", "dir"], env=uv_env, capture_output=True, text=True, check=True).stdout.strip()
    setup_venv = (SCRIPTS / "setup_venv.sh").read_text()
    assert "UV_CACHE_DIR" not in setup_venv, "scripts/setup_venv.sh sets uv's cache dir: check the workflow's uv cache path"
    apt = {}
    for name in ("redis.sh", "postgres.sh"):
        for package in re.findall(r"apt-get install -y -qq (\S+)", (SCRIPTS / name).read_text()):
            apt[package] = name
    for package in re.findall(r"missing\+=\((\S+)\)", kafka_sh):
        apt[package] = "kafka.sh"
    return Truth(
        readme=(REPO_ROOT / "README.md").read_text(),
        ci_run=(REPO_ROOT / ".ci" / "run").read_text(),
        makefile=(REPO_ROOT / "Makefile").read_text(),
        uv_cache=uv_cache,
        kafka_versions={"kafka": kafka["KAFKA_VERSION"], "log4j": kafka["LOG4J_VERSION"], "slf4j": kafka["SLF4J_VERSION"]},
        kafka_cache=kafka["cache"],
        maven_repository=f"{HOME}/.m2/repository",
        go_bin=script_values(go_tool, ["cache"])["cache"] + "/bin",
        python=re.search(r"PYTHON:-python(3\.\d+)", setup_venv).group(1),
        java=re.search(r"openjdk-(\d+)-jre", kafka_sh).group(1),
        apt_packages=apt,
        outputs=run_versions_step(load(), tmp_path_factory.mktemp("versions")),
    )


# ---------------------------------------------------------------- the checks (each returns problems)
def check_test_command(wf: dict, t: Truth) -> list[str]:
    problems = []
    commands = readme_test_commands(t.readme)
    if len(commands) != 1:
        return [f"the README's two-commands block has {commands} as its pytest command, expected one"]
    command = commands[0]
    if readme_ci_run_command(t.readme) != command:
        problems.append(f"the README says .ci/run runs {readme_ci_run_command(t.readme)!r}, its test command is {command!r}")
    if ci_run_commands(t.ci_run) != [command]:
        problems.append(f".ci/run runs {ci_run_commands(t.ci_run)}, the README's test command is {command!r}")
    if "test" not in wf.get("jobs", {}):
        return problems + ["no `test` job"]
    runs = [s for s in job_steps(wf, "test") if "run" in s]
    testing = [s for s in runs if is_test_step(s, t)]
    if len(testing) != 1:
        problems.append(f"the test job must run {command!r} (or .ci/run) in exactly one step, found {len(testing)}")
    problems += [f"the test job runs pytest outside the README's command: {s['run']!r}" for s in runs if "pytest" in s["run"]]
    for step in testing:
        env = step_env(wf, "test", step)
        if "PYTEST_ARGS" in env:
            problems.append(f"PYTEST_ARGS={env['PYTEST_ARGS']!r} changes what `make test` runs")
        extra = [o for o in shlex.split(runner_value(env.get("PYTEST_ADDOPTS", ""))) if not o.startswith(ALLOWED_PYTEST_OPTIONS)]
        if extra:
            problems.append(f"PYTEST_ADDOPTS selects or changes tests: {extra}")
        if step.get("continue-on-error") or wf["jobs"]["test"].get("continue-on-error") or step.get("working-directory"):
            problems.append("the test step must run at the checkout's root and fail the job")
    return problems


def check_make_targets(wf: dict, t: Truth) -> list[str]:
    """Every `make X` of the workflow is a Makefile target; the lint job runs lint and deploy-check."""
    targets = makefile_targets(t.makefile)
    problems = []
    for job in wf.get("jobs", {}):
        for step in job_steps(wf, job):
            for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)", str(step.get("run", ""))):
                if target not in targets:
                    problems.append(f"job {job} runs `make {target}`: no such Makefile target")
    lint_runs = {str(s.get("run", "")).strip() for s in job_steps(wf, "lint")}
    problems += [f"the lint job does not run `{c}`" for c in ("make lint", "make deploy-check") if c not in lint_runs]
    return problems


def check_caches(wf: dict, t: Truth) -> list[str]:
    """Each cache path is one the scripts use; the jobs have the caches they need; keys follow content."""
    known = {"uv": {t.uv_cache}, "kafka": {t.kafka_cache, t.maven_repository}, "go": {t.go_bin}}
    needed = {"test": ("uv", "kafka", "go"), "lint": ("uv", "go")}
    problems = []
    if any(t.outputs.get(k) != v for k, v in t.kafka_versions.items()):
        problems.append(f"the versions step outputs {t.outputs}, scripts/kafka.sh has {t.kafka_versions}")
    for job in wf.get("jobs", {}):
        found = set()
        for step in cache_steps(wf, job):
            paths = {expand(p, t.outputs) for p in cache_paths(step)}
            kind = next((k for k, v in known.items() if paths == v), None)
            if kind is None:
                problems.append(f"job {job}: cache of {sorted(paths)} is none the scripts use: {known}")
                continue
            found.add(kind)
            key = str((step.get("with") or {}).get("key", ""))
            if kind == "uv" and not re.search(r"hashFiles\([^)]*'requirements\.txt'", key):
                problems.append(f"job {job}: the uv cache key {key!r} does not hash requirements.txt")
            if kind == "go" and not re.search(r"hashFiles\([^)]*'scripts/go_tool\.sh'", key):
                problems.append(f"job {job}: the Go tools' key {key!r} does not hash scripts/go_tool.sh")
            if kind == "kafka":
                missing = [k for k in t.kafka_versions if not re.search(rf"steps\.versions\.outputs\.{k}\b", key)]
                if missing:
                    problems.append(f"job {job}: the Kafka cache key {key!r} lacks the versions {missing}")
        problems += [f"job {job} has no {kind} cache" for kind in needed.get(job, ()) if kind not in found]
    return problems


def check_safety(wf: dict, t: Truth) -> list[str]:
    problems = []
    if wf.get("permissions") != {"contents": "read"}:
        problems.append(f"workflow permissions {wf.get('permissions')!r}, expected {{contents: read}}")
    on = triggers(wf)
    if "main" not in ((on.get("push") or {}).get("branches") or []) or "pull_request" not in on or "workflow_dispatch" not in on:
        problems.append(f"triggers {on!r}: push to main, pull_request and workflow_dispatch expected")
    if "pull_request_target" in on:
        problems.append("pull_request_target runs untrusted code with the base repository's rights")
    concurrency = wf.get("concurrency") or {}
    if concurrency.get("cancel-in-progress") is not True or "github.ref" not in str(concurrency.get("group", "")):
        problems.append(f"concurrency {concurrency!r}: one run per ref, cancel-in-progress")
    for name, job in (wf.get("jobs") or {}).items():
        perms = job.get("permissions")
        if perms is not None and (not isinstance(perms, dict) or any(v not in ("read", "none") for v in perms.values())):
            problems.append(f"job {name}: permissions {perms!r} are not read-only")
        if not isinstance(job.get("timeout-minutes"), int) or not 0 < job["timeout-minutes"] <= 90:
            problems.append(f"job {name}: timeout-minutes {job.get('timeout-minutes')!r}, expected 1..90")
        for step in job.get("steps") or []:
            ref = step.get("uses")
            if not ref:
                continue
            m = re.fullmatch(r"([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@(v(\d+)(?:\.\d+)*|[0-9a-f]{40})", ref)
            if m is None:
                problems.append(f"job {name}: {ref!r} is not pinned to a version tag or a commit")
            elif m.group(3) is not None and int(m.group(3)) < MIN_MAJOR.get(m.group(1), 0):
                problems.append(f"job {name}: {ref} is older than v{MIN_MAJOR[m.group(1)]} (Node 20 actions are retired)")
    if wf.get("jobs", {}).get("test", {}).get("timeout-minutes") != 90:
        problems.append("the test job's timeout is 90 minutes")
    return problems


def check_artifacts(wf: dict, t: Truth) -> list[str]:
    """On failure the test job uploads screenshots, pytest's temp dirs' logs and the checkout's logs/."""
    steps = job_steps(wf, "test")
    test_index = next((i for i, s in enumerate(steps) if is_test_step(s, t)), None)
    uploads = [(i, s) for i, s in enumerate(steps) if uses(s, "actions/upload-artifact")]
    if test_index is None or not uploads:
        return ["the test job uploads no artifacts after its test step"]
    problems = []
    i, upload = uploads[0]
    if i < test_index or "failure()" not in str(upload.get("if", "")):
        problems.append(f"the upload step must follow the test step with `if: failure()`, has if={upload.get('if')!r}")
    paths = [runner_value(p.strip()).rstrip("/") for p in str((upload.get("with") or {}).get("path", "")).splitlines() if p.strip()]
    env = {k: runner_value(v) for k, v in step_env(wf, "test", steps[test_index]).items()}
    wanted = {name: os.path.dirname(env[name]) for name in ("TAXI_SCREENSHOT_PATH", "TAXI_SYNTHETIC_SCREENSHOT_PATH") if env.get(name)}
    if len(wanted) != 2:
        problems.append("the test step keeps no screenshots (TAXI_SCREENSHOT_PATH, TAXI_SYNTHETIC_SCREENSHOT_PATH)")
    basetemp = re.search(r"--basetemp=(\S+)", str(env.get("PYTEST_ADDOPTS", "")))
    if basetemp is None:
        problems.append("the test step sets no --basetemp: the Airflow logs of the tests' stacks are not found after the run")
    else:
        wanted["Airflow and service logs under pytest's temp dirs"] = basetemp.group(1) + "/**/logs"
    wanted["the checkout's logs/"] = "logs"
    for what, path in wanted.items():
        if not any(path == p or path.startswith(p + "/") for p in paths):
            problems.append(f"the upload does not include {what} ({path}): paths {paths}")
    return problems


def check_setup(wf: dict, t: Truth) -> list[str]:
    """Python, Java and Go as the scripts need them; the packages the scripts would apt-get
    (the runner is not root); a browser from the runner image, never Ubuntu's chromium snap."""
    problems = []
    for job in wf.get("jobs", {}):
        steps = job_steps(wf, job)
        python = [str((s.get("with") or {}).get("python-version")) for s in steps if uses(s, "actions/setup-python")]
        if python != [t.python]:
            problems.append(f"job {job}: setup-python {python}, scripts/setup_venv.sh wants {t.python}")
        if not any(uses(s, "actions/setup-go") for s in steps):
            problems.append(f"job {job}: no Go for scripts/go_tool.sh (helm, actionlint)")
        if not any("shellcheck" in str(s.get("run", "")) and "apt-get install" in str(s.get("run", "")) for s in steps):
            problems.append(f"job {job}: shellcheck is not installed (actionlint's shell checks; the runner is not root)")
    steps = job_steps(wf, "test")
    java = [(s.get("with") or {}) for s in steps if uses(s, "actions/setup-java")]
    if [(str(j.get("java-version")), j.get("distribution")) for j in java] != [(t.java, "temurin")]:
        problems.append(f"the test job's Java {java}, scripts/kafka.sh wants Java {t.java} (temurin)")
    installs = " ".join(str(s.get("run", "")) for s in steps if "sudo" in str(s.get("run", "")) and "apt-get install" in str(s.get("run", "")))
    for package, script in t.apt_packages.items():
        if package.startswith("openjdk-"):
            continue  # setup-java
        if not re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", installs):
            problems.append(f"the test job does not install {package} (scripts/{script} would apt-get it, without root)")
    runs = " ".join(str(s.get("run", "")) for s in steps)
    if re.search(r"apt-get install[^\n]*\bchromium\b", runs):
        problems.append("Ubuntu's chromium package is a snap: use the runner image's browser")
    if "TAXI_CHROMIUM=" not in runs:
        problems.append("the test job does not tell the browser tests which browser to use (TAXI_CHROMIUM)")
    return problems


CHECKS: list[Callable[[dict, Truth], list[str]]] = [check_test_command, check_make_targets, check_caches, check_safety, check_artifacts, check_setup]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_workflow_passes(check, truth):
    problems = check(load(), truth)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- each check can fail
_DELETE = object()


def _set(path: str, value):
    def mutate(wf, t):
        *parents, last = path.split(".")
        node = wf
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return wf, t

    return mutate


def _test_step(wf) -> dict:
    return next(s for s in wf["jobs"]["test"]["steps"] if s.get("run", "").strip() == "make test")


def _step(job: str, predicate) -> Callable[[dict], dict]:
    return lambda wf: next(s for s in wf["jobs"][job]["steps"] if predicate(s))


def _edit(get, key, value):
    def mutate(wf, t):
        step = get(wf)
        if value is _DELETE:
            step.pop(key, None)
        else:
            step[key] = value(step.get(key)) if callable(value) else value
        return wf, t

    return mutate


def _truth(**changes):
    return lambda wf, t: (wf, replace(t, **changes))


_uv = _step("test", lambda s: uses(s, "actions/cache") and "uv" in str(s["with"]["path"]))
_kafka = _step("test", lambda s: uses(s, "actions/cache") and "kafka" in str(s["with"]["path"]))
_go = _step("lint", lambda s: uses(s, "actions/cache") and "go" in str(s["with"]["path"]))
_upload = _step("test", lambda s: uses(s, "actions/upload-artifact"))
_with = lambda key, value: lambda w: {**w, key: value}  # noqa: E731

PLANTED = {
    "test step runs test-fast": _edit(_test_step, "run", "make test-fast"),
    "README's test command differs": _truth(readme=re.sub(r"^make test(\s+#)", r"make check\1", (REPO_ROOT / "README.md").read_text(), flags=re.M)),
    ".ci/run runs another command": _truth(ci_run="#!/usr/bin/env bash\nset -euo pipefail\nmake test-fast\n"),
    "PYTEST_ADDOPTS deselects": _edit(_test_step, "env", lambda env: {**env, "PYTEST_ADDOPTS": env["PYTEST_ADDOPTS"] + " -m unit"}),
    "PYTEST_ARGS set": _edit(_test_step, "env", lambda env: {**env, "PYTEST_ARGS": "-k kafka"}),
    "extra pytest step": lambda wf, t: (wf["jobs"]["test"]["steps"].append({"run": "python -m pytest tests/unit"}) or wf, t),
    "unknown make target": _edit(_step("lint", lambda s: s.get("run") == "make lint"), "run", "make lint-all"),
    "uv cache in pip's dir": _edit(_uv, "with", _with("path", "~/.cache/pip")),
    "uv key without requirements": _edit(_uv, "with", _with("key", "uv-${{ runner.os }}")),
    "Kafka cache of another version": _edit(_kafka, "with", _with("path", "~/.cache/chicago-taxi/kafka-4.0.0\n~/.m2/repository\n")),
    "Kafka cache without Maven's repository": _edit(
        _kafka, "with", _with("path", "~/.cache/chicago-taxi/kafka-${{ steps.versions.outputs.kafka }}\n")
    ),
    "Kafka key without the version": _edit(_kafka, "with", _with("key", "kafka-${{ runner.os }}")),
    "versions step outputs another version": _truth(outputs={"kafka": "3.9.0", "log4j": "2.25.5", "slf4j": "2.0.17"}),
    "Go tools cached outside go_tool.sh's dir": _edit(_go, "with", _with("path", "~/go/bin")),
    "Go key without go_tool.sh": _edit(_go, "with", _with("key", "go-${{ runner.os }}")),
    "no Go cache in lint": lambda wf, t: (wf["jobs"]["lint"]["steps"].remove(_go(wf)) or wf, t),
    "write permissions": _set("permissions", {"contents": "write"}),
    "job permissions write-all": _set("jobs.lint.permissions", "write-all"),
    "no timeout": _set("jobs.test.timeout-minutes", _DELETE),
    "timeout of 6 hours": _set("jobs.lint.timeout-minutes", 360),
    "no cancel-in-progress": _set("concurrency.cancel-in-progress", False),
    "no pull_request trigger": lambda wf, t: (wf.update({True: {k: v for k, v in triggers(wf).items() if k != "pull_request"}}) or wf, t),
    "pull_request_target trigger": lambda wf, t: (wf.update({True: {**triggers(wf), "pull_request_target": None}}) or wf, t),
    "action on a branch": _edit(_step("test", lambda s: uses(s, "actions/checkout")), "uses", "actions/checkout@main"),
    "Node 20 action": _edit(_upload, "uses", "actions/upload-artifact@v4"),
    "artifacts always, not on failure": _edit(_upload, "if", _DELETE),
    "artifacts without the logs": _edit(_upload, "with", _with("path", "${{ runner.temp }}/artifacts/\n")),
    "no screenshots kept": _edit(_test_step, "env", lambda env: {k: v for k, v in env.items() if "SCREENSHOT" not in k}),
    "Python 3.12": _edit(_step("lint", lambda s: uses(s, "actions/setup-python")), "with", {"python-version": "3.12"}),
    "Java 21": _edit(_step("test", lambda s: uses(s, "actions/setup-java")), "with", {"distribution": "temurin", "java-version": "21"}),
    "no redis-server package": _edit(_step("test", lambda s: "redis-server" in str(s.get("run"))), "run", lambda r: r.replace("redis-server ", "")),
    "chromium from apt": lambda wf, t: (wf["jobs"]["test"]["steps"].insert(1, {"run": "sudo apt-get install -y chromium"}) or wf, t),
    "no shellcheck in lint": _edit(_step("lint", lambda s: "shellcheck" in str(s.get("run"))), "run", "true"),
}


def _problems(wf, t) -> set[str]:
    return {p for check in CHECKS for p in check(wf, t)}


@pytest.mark.parametrize("plant", PLANTED.values(), ids=PLANTED.keys())
def test_each_check_catches_a_planted_violation(plant, truth):
    before = _problems(load(), truth)
    wf, t = plant(copy.deepcopy(load()), truth)
    assert _problems(wf, t) - before, "the planted violation went unnoticed"


# ---------------------------------------------------------------- actionlint with shellcheck
def shellcheck() -> str:
    """shellcheck on PATH, installed from Debian's packages when missing (as scripts/redis.sh
    installs redis): actionlint only checks `run:` blocks when it finds shellcheck."""
    found = shutil.which("shellcheck")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=300", "-qq"]
    for command in ([*apt, "update"], [*apt, "install", "-y", "shellcheck"]):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"shellcheck is missing and `{' '.join(command)}` failed: {proc.stderr[-2000:]}", pytrace=False)
    found = shutil.which("shellcheck")
    assert found, "apt-get installed shellcheck but it is not on PATH"
    return found


@pytest.fixture(scope="module")
def actionlint() -> Callable[[list[Path]], subprocess.CompletedProcess]:
    proc = subprocess.run([str(SCRIPTS / "go_tool.sh"), "path", "actionlint"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"scripts/go_tool.sh could not build actionlint: {proc.stderr[-2000:]}"
    binary, checker = proc.stdout.strip().splitlines()[-1], shellcheck()

    def run(files: list[Path]) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "-no-color", f"-shellcheck={checker}", *map(str, files)], capture_output=True, text=True, timeout=300)

    return run


def test_actionlint_passes_every_workflow(actionlint):
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert CI in files
    proc = actionlint(files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_fails_a_planted_shell_error_and_a_planted_expression_error(actionlint, tmp_path):
    wf = load()
    wf["jobs"]["lint"]["steps"].append({"name": "planted", "run": "ls $GITHUB_WORKSPACE"})  # SC2086 (unquoted)
    wf["jobs"]["test"]["env"] = {"PLANTED": "${{ runner.temp }}/x"}  # `runner` is not available in a job's env
    planted = tmp_path / ".github" / "workflows" / "ci.yml"
    planted.parent.mkdir(parents=True)
    wf = {("on" if key is True else key): value for key, value in wf.items()}
    planted.write_text(yaml.safe_dump(wf, sort_keys=False))
    proc = actionlint([planted])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SC2086" in proc.stdout and "shellcheck" in proc.stdout, f"shellcheck did not run: {proc.stdout}"
    assert '"runner" is not allowed here' in proc.stdout, proc.stdout
