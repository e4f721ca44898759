"""Benchmark the prediction service (BentoML) against its floor, measured in the same run.

- In process (no HTTP): a raw pipelined Redis read of the same keys Feast reads, and the
  service's own work (`FareService.predict`: store read + transform + model), with the default
  scorer (numpy) and with the traced TensorFlow graph (`TAXI_SCORER=graph`), same run.
- Over HTTP with `wrk` (concurrency 1, 8 and 32; single trips and batches of 100): the BentoML
  service and a bare uvicorn app doing the same work with the same model (benchmarks/bare_app.py).
  The two servers run one after the other, never side by side.
- Memory: the BentoML service's resident set sampled during a soak at concurrency 8.

Needs a champion in the MLflow registry (`make run`). Starts its own redis-server on a free
127.0.0.1 port, warms it, and stops everything it started. Installs `wrk` from Debian if missing.
Usage: `make bench-serving` (BENCH_ARGS="--duration 30 --soak 300").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
from bench_feature_store import free_port, percentiles  # noqa: E402  (the same helpers, one copy)

from chicago_taxi.core import schema  # noqa: E402

COLUMNS = list(schema.MODEL_INPUT_COLUMNS)  # the request fields: every model input
LUA = """
local bodies = {}
local i = 0
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%f, "p50": %%f, "p95": %%f, "p99": %%f, "errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def request_trips(n: int = 100) -> list[dict]:
    trips = pd.read_csv(ROOT / "data" / "chicago_taxi_trips.csv")
    trips = trips[(trips.trip_seconds >= 1) & (trips.trip_miles <= 100)].sort_values("trip_start_timestamp").tail(n)
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in trips[COLUMNS].to_dict("records")]


# ---------------------------------------------------------------- in process
def in_process(trips: list[dict], repeats: int) -> dict:
    import redis
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from chicago_taxi.core import schema
    from chicago_taxi.core.config import load_settings
    from chicago_taxi.features import aggregates
    from chicago_taxi.serving.fare_service import FareService

    settings = load_settings()
    service = FareService(settings)  # the default scorer: numpy where the model allows it
    os.environ["TAXI_SCORER"] = "graph"
    graph_service = FareService(settings, store=service.store)  # the traced TensorFlow graph, same store client
    del os.environ["TAXI_SCORER"]
    print(f"  scorer: {service.model.predictor.scorer_note}")
    host, port = settings.redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    keys = aggregates.entity_keys(pd.DataFrame(trips))

    def redis_keys(rows: pd.DataFrame) -> list[tuple[bytes, list[bytes]]]:
        out = []
        for view in schema.STORE_VIEWS:
            fields = [_mmh3(f"{view.name}:{f}") for f in view.features] + [f"_ts:{view.name}".encode()]
            for value in rows[view.entity]:
                proto = Value(string_val=value) if isinstance(value, str) else Value(int64_val=int(value))
                key = EntityKey(join_keys=[view.entity], entity_values=[proto])
                out.append((_redis_key("chicago_taxi", key, entity_key_serialization_version=3), fields))
        return out

    results = {}
    for n in (1, 100):
        batch = trips[:n]
        wanted = redis_keys(keys.head(n))
        raw, work, graph_work = [], [], []
        # One variant at a time: TensorFlow's threads spin for a while after each graph call and
        # would slow whatever ran right after them.
        for _ in range(repeats):
            t = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for key, fields in wanted:
                pipe.hmget(key, fields)
            for values in pipe.execute():
                for b in values[:-1]:
                    if b is not None:
                        Value().ParseFromString(b)
            raw.append(time.perf_counter() - t)
        for scorer, samples in ((service, work), (graph_service, graph_work)):
            for _ in range(20):  # warm-up
                scorer.predict(batch)
            for _ in range(repeats):
                t = time.perf_counter()
                scorer.predict(batch)
                samples.append(time.perf_counter() - t)
        results[n] = {"raw_redis": percentiles(raw), "service_work": percentiles(work), "graph_work": percentiles(graph_work)}
    return results


# ---------------------------------------------------------------- over HTTP
class Server:
    def __init__(self, name: str, cmd: list[str], port: int, env: dict, log: Path):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True)
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                return
            except OSError as exc:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"{name} did not start: {log.read_text()[-3000:]}") from exc
                time.sleep(0.5)

    def pids(self) -> list[int]:
        import psutil

        parent = psutil.Process(self.proc.pid)
        return [parent.pid] + [c.pid for c in parent.children(recursive=True)]

    def rss_mb(self) -> float:
        import psutil

        return sum(psutil.Process(p).memory_info().rss for p in self.pids()) / 2**20

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def check_answers(port: int, trips: list[dict]) -> None:
    """The benchmark measures scoring: every trip of its payload must get a fare, not an error entry."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict_batch", data=json.dumps({"trips": trips}).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answers = json.loads(response.read())
    refused = [a for a in answers if "fare" not in a]
    if len(answers) != len(trips) or refused:
        raise SystemExit(f"{len(answers)} answers for {len(trips)} trips, {len(refused)} refused: {refused[:2]}")


def wrk(port: int, path: str, bodies: Path, concurrency: int, seconds: int, tmp: Path) -> dict:
    script = tmp / f"wrk{path.replace('/', '_')}.lua"
    script.write_text(LUA % {"bodies": bodies, "path": path})
    threads = min(concurrency, 2)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def soak(server: Server, path: str, bodies: Path, seconds: int, tmp: Path) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        started = time.time()
        while not stop.is_set():
            samples.append((time.time() - started, server.rss_mb()))
            stop.wait(10)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result = wrk(server.port, path, bodies, 8, seconds, tmp)
    stop.set()
    thread.join()
    samples.append((float(seconds), server.rss_mb()))
    return samples, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30, help="seconds per setting (default 30)")
    parser.add_argument("--soak", type=int, default=300, help="seconds of the memory soak at concurrency 8 (0: skip)")
    parser.add_argument("--repeats", type=int, default=300, help="in-process repetitions")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: installing Debian's wrk package")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})

    redis_port = free_port()
    subprocess.run([str(ROOT / "scripts" / "redis.sh"), "start", str(redis_port)], check=True)
    os.environ.update(TAXI_ONLINE_STORE="redis", REDIS_PORT=str(redis_port), TAXI_CHAMPION_POLL_SECONDS="0")
    env = {k: v for k, v in os.environ.items()}
    tmp = Path(tempfile.mkdtemp(prefix="taxi-serve-bench-"))
    servers: list[Server] = []
    try:
        subprocess.run([sys.executable, "-m", "chicago_taxi.features.store", "warm"], env=env, check=True, cwd=ROOT)
        trips = request_trips()
        single = tmp / "single.jsonl"
        single.write_text("".join(json.dumps({"trip": t}) + "\n" for t in trips))
        batch = tmp / "batch.jsonl"
        batch.write_text(json.dumps({"trips": trips}) + "\n")

        print(f"in process: {args.repeats} repetitions each")
        local = in_process(trips, args.repeats)

        http: dict[str, dict] = {}
        commands = {
            "BentoML service": ["bentoml", "serve", "bentos/service.py:TaxiFareService", "--host", "127.0.0.1", "--port", "{port}"],
            "bare uvicorn app": [sys.executable, "benchmarks/bare_app.py", "{port}"],
        }
        memory = None
        for name, cmd in commands.items():
            port = free_port()
            print(f"starting {name} on 127.0.0.1:{port}")
            server = Server(name, [c.format(port=port) for c in cmd], port, env, tmp / f"{name.split()[0]}.log")
            servers.append(server)
            check_answers(port, trips)
            for path, bodies, label in (("/predict", single, "single"), ("/predict_batch", batch, "batch of 100")):
                wrk(port, path, bodies, 1, 3, tmp)  # warm-up
                for concurrency in (1, 8, 32):
                    result = wrk(port, path, bodies, concurrency, args.duration, tmp)
                    http[(name, label, concurrency)] = result
                    print(
                        f"  {label:12s} c={concurrency:2d}: {result['rps']:8.1f} req/s  p50 {result['p50']:7.2f}  p95 {result['p95']:7.2f}  p99 {result['p99']:7.2f} ms  errors {result['errors']}"
                    )
            if name.startswith("BentoML") and args.soak:
                print(f"  memory soak: {args.soak} s of single trips at concurrency 8")
                memory = soak(server, "/predict", single, args.soak, tmp)
            server.stop()
            servers.remove(server)
    finally:
        for server in servers:
            server.stop()
        subprocess.run([str(ROOT / "scripts" / "redis.sh"), "stop", str(redis_port)])

    print("\nIn process, no HTTP (ms)")
    print("| trips | raw pipelined Redis read p50 | p99 | FareService.predict p50 | p99 | the same, scored by the TF graph p50 | p99 |")
    print("|---|---|---|---|---|---|---|")
    for n, r in local.items():
        cells = " | ".join(f"{r[k][0]:.2f} | {r[k][1]:.2f}" for k in ("raw_redis", "service_work", "graph_work"))
        print(f"| {n} | {cells} |")
    print(f"\nOver HTTP, wrk, {args.duration} s per setting")
    print("| payload | concurrency | BentoML req/s | p50 | p95 | p99 ms | bare req/s | p50 | p95 | p99 ms | p99 ratio | req/s ratio | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label in ("single", "batch of 100"):
        for c in (1, 8, 32):
            b, f = http[("BentoML service", label, c)], http[("bare uvicorn app", label, c)]
            print(
                f"| {label} | {c} | {b['rps']:.1f} | {b['p50']:.2f} | {b['p95']:.2f} | {b['p99']:.2f} | {f['rps']:.1f} | {f['p50']:.2f} | {f['p95']:.2f} | "
                f"{f['p99']:.2f} | {b['p99'] / f['p99']:.2f}x | {b['rps'] / f['rps']:.2f}x | {b['errors'] + f['errors']} |"
            )
    for label in ("single", "batch of 100"):
        best_b = max(http[("BentoML service", label, c)]["rps"] for c in (1, 8, 32))
        best_f = max(http[("bare uvicorn app", label, c)]["rps"] for c in (1, 8, 32))
        print(f"best throughput, {label}: BentoML {best_b:.1f} req/s, bare {best_f:.1f} req/s ({best_b / best_f:.2f}x)")
    if memory:
        samples, result = memory
        rss = [m for _, m in samples]
        half = len(rss) // 2
        print(
            f"\nMemory soak, {args.soak} s at concurrency 8 ({result['requests']} requests, {result['errors']} errors): "
            f"RSS {rss[0]:.0f} MB at start, {max(rss):.0f} MB peak, {rss[-1]:.0f} MB at end; "
            f"mean of the first half {np.mean(rss[:half]):.0f} MB, second half {np.mean(rss[half:]):.0f} MB"
        )
    print("\nGoals: p99 at concurrency 1 and 8 <= 3x the bare app; best throughput >= 0.7x the bare app; zero errors; memory flat.")
    one, hundred = local[1]["service_work"], local[100]["service_work"]
    single_c1 = http[("BentoML service", "single", 1)]
    best_single = max(http[("BentoML service", "single", c)]["rps"] for c in (1, 8, 32))
    checks = [
        ("FareService.predict, 1 trip, p50 <= 1.5 ms", one[0], one[0] <= 1.5),
        ("FareService.predict, 1 trip, p99 <= 3 ms", one[1], one[1] <= 3.0),
        ("FareService.predict, 100 trips, p50 <= 5 ms", hundred[0], hundred[0] <= 5.0),
        ("BentoML, 1 trip over HTTP at concurrency 1, p50 <= 4 ms", single_c1["p50"], single_c1["p50"] <= 4.0),
        ("BentoML, best single-trip throughput >= 250 req/s", best_single, best_single >= 250),
    ]
    for label, value, met in checks:
        print(f"  {'met   ' if met else 'MISSED'} {label}: {value:.2f}")


if __name__ == "__main__":
    main()
