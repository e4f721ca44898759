"""`make airflow-ui` and `make airflow-stop`, the README's commands for the live stack, run as
printed (ports and state dirs moved aside by environment variables): PostgreSQL, the MLflow
tracking server on it, then Airflow, whose components use that server over HTTP; everything on
127.0.0.1, the generated admin password never printed; `make airflow-stop` leaves nothing behind.
Twice: as `make airflow-ui`, and as `make airflow-ui EXECUTOR=celery WORKERS=2` (Redis started
for the broker, two Celery workers beside the four components)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fixtures.airflow import _session_pids, listening_sockets, postgres_dir
from fixtures.env import REPO_ROOT, free_port, project_env


def make(target: str, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", target, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


EXECUTORS = {"local": (), "celery": ("EXECUTOR=celery", "WORKERS=2")}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.fixture(scope="module", params=list(EXECUTORS))
def live(request, tmp_path_factory):
    """The stack of `make airflow-ui [EXECUTOR=celery WORKERS=2]` in a sandbox of its own;
    `make airflow-stop` at the end."""
    executor = request.param
    tmp = tmp_path_factory.mktemp(f"live_stack_{executor}")
    pg_dir = postgres_dir("taxi-live-pg-")
    env = project_env(
        tmp,
        AIRFLOW_PORT=str(free_port()),
        MLFLOW_PORT=str(free_port()),
        TAXI_POSTGRES_PORT=str(free_port()),
        TAXI_POSTGRES_DIR=str(pg_dir),
        TAXI_MLFLOW_SERVER_DIR=str(tmp / "mlflow-server"),
        TAXI_MLFLOW_SERVER_ARTIFACTS=str(tmp / "mlflow-artifacts"),
        REDIS_PORT=str(free_port()),  # the Celery broker's Redis (make airflow-ui EXECUTOR=celery starts it)
    )
    # As a user's shell has them: nothing of project_env's embedded defaults that env.sh would keep.
    for key in ("MLFLOW_TRACKING_URI", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__API__PORT"):
        env.pop(key, None)
    for key in [k for k in env if k.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS")]:
        env.pop(key)
    started = time.monotonic()
    up = make("airflow-ui", env, *EXECUTORS[executor])
    seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, (
            f"make airflow-ui {' '.join(EXECUTORS[executor])} failed ({up.returncode}):\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
        )
        print(
            f"\n[timing] make airflow-ui {' '.join(EXECUTORS[executor])} (PostgreSQL, MLflow server, migrate, Airflow healthy): {seconds:.1f} s",
            flush=True,
        )
        yield env, up, Path(env["AIRFLOW_HOME"])
    finally:
        down = make("airflow-stop", env, timeout=300)
        if executor == "celery":  # the broker's Redis stays up after airflow-stop, as after `make services`
            subprocess.run([str(REPO_ROOT / "scripts" / "redis.sh"), "stop", env["REDIS_PORT"]], capture_output=True, timeout=60)
        leftover = [p for p in _pids_under(tmp) if p]
        if leftover:  # never leave a stray server behind, whatever the assertions say
            subprocess.run(["kill", "-9", *map(str, leftover)], capture_output=True)
        subprocess.run([str(REPO_ROOT / "scripts" / "postgres.sh"), "stop"], env=env, capture_output=True, timeout=120)
        assert down.returncode == 0, f"make airflow-stop failed: {(down.stdout + down.stderr)[-3000:]}"
        assert not leftover, f"processes of the stack still running after make airflow-stop: {leftover}"


def _pids_under(tmp: Path) -> list[int]:
    """Processes whose command line mentions the sandbox (servers started with its paths)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(tmp) in cmdline and "pytest" not in cmdline:
                pids.append(int(entry.name))
    return pids


def test_the_mlflow_server_runs_on_postgresql_and_serves_artifacts(live):
    env, _, _ = live
    url = f"http://127.0.0.1:{env['MLFLOW_PORT']}"
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    pid = (Path(env["TAXI_MLFLOW_SERVER_DIR"]) / "server.pid").read_text().strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert cmdline[cmdline.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://"), cmdline
    assert "--serve-artifacts" in cmdline and cmdline[cmdline.index("--artifacts-destination") + 1] == env["TAXI_MLFLOW_SERVER_ARTIFACTS"], cmdline
    # MLflow 3 checks the Host header (not on /health): its loopback name passes, another is refused.
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search, timeout=10).status_code == 200
    assert httpx.get(search, headers={"Host": "attacker.example"}, timeout=10).status_code in (400, 403)


def test_airflow_uses_the_tracking_server_over_http(live):
    env, _, home = live
    pgid = int((home / "stack.pgid").read_text())
    pids = _session_pids(pgid)
    assert pids, "no Airflow process running"
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in pids}
    components = [pid for pid, command in commands.items() if "bin/airflow " in command]
    # Celery renames its processes ("[celeryd: worker-1@host:MainProcess] ..."): find them by name.
    workers = {name for command in commands.values() if "celery" in command for name in re.findall(r"worker-\d+(?=@)", command)}
    if "Executor: CeleryExecutor" in live[1].stdout:
        assert "workers: worker-1 worker-2" in live[1].stdout and workers == {"worker-1", "worker-2"}, commands
    else:
        assert not workers, commands
    assert len(components) >= 4, commands
    uris = {commands[pid][:100]: environ_of(pid).get("MLFLOW_TRACKING_URI") for pid in components}
    assert set(uris.values()) == {f"http://127.0.0.1:{env['MLFLOW_PORT']}"}, uris
    health = httpx.get(f"http://127.0.0.1:{env['AIRFLOW_PORT']}/api/v2/monitor/health", timeout=10).json()
    assert all(health[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")), health
    # The Execution API was warmed before the command returned (its first request builds its routes,
    # ~8.5 s here; the time of a request now is printed, not asserted).
    assert re.search(r"Execution API warmed in \d+s", live[1].stdout), live[1].stdout[-2000:]
    started = time.monotonic()
    assert httpx.get(f"http://127.0.0.1:{env['AIRFLOW_PORT']}/execution/health", timeout=10).json() == {"status": "healthy"}
    print(f"\n[timing] /execution/health after the warm-up: {time.monotonic() - started:.3f} s", flush=True)


def test_everything_listens_on_loopback_only(live):
    env, _, home = live
    mlflow_pid = int((Path(env["TAXI_MLFLOW_SERVER_DIR"]) / "server.pid").read_text())
    pids = set(_session_pids(int((home / "stack.pgid").read_text()))) | set(_session_pids(mlflow_pid))
    sockets = listening_sockets(pids)
    assert {s["port"] for s in sockets} >= {int(env["AIRFLOW_PORT"]), int(env["MLFLOW_PORT"])}, sockets
    assert all(s["address"] == "127.0.0.1" for s in sockets), sockets


def test_the_login_is_a_file_of_the_owners_never_printed(live):
    env, up, home = live
    passwords = home / "simple_auth_manager_passwords.json.generated"
    assert passwords.stat().st_mode & 0o777 == 0o600, oct(passwords.stat().st_mode)
    secret = next(iter(json.loads(passwords.read_text()).values()))
    assert secret not in up.stdout + up.stderr
    assert str(passwords) in up.stdout, up.stdout[-2000:]
    # Generated before the api-server starts, so Airflow never prints one into its logs either.
    logs = {p: p.read_text(errors="replace") for p in home.rglob("*.log")}
    assert logs and not [p for p, text in logs.items() if secret in text], "the admin password is in a log"
