"""Stream scoring scaled out by partition: scorers of one consumer group side by side, each on its
own partitions of `taxi-raw-data` (`python -m chicago_taxi.streaming drain --scorer K/N`, what the
taxi_stream DAG's mapped drain tasks run with TAXI_STREAM_SCORERS=N), against the session's Kafka
broker, a Redis of this module's own and the session's champion.

Every scorer is a process of its own, as on separate machines: two drain in parallel and every
trip is scored exactly once; one killed in the middle of a batch (scored, nothing published or
committed) loses nothing when its partitions move to the survivor (two scorers become one), and
the duplicates at-least-once allows are counted. Results are read from the output topics,
filtered by each test's trip id prefix (fixtures/streams.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pandas as pd

from chicago_taxi.core.config import load_settings
from chicago_taxi.ingest import topics
from chicago_taxi.serving.fare_service import load_champion
from chicago_taxi.streaming import kafka_io
from fixtures.env import REPO_ROOT
from fixtures.streams import Outputs, end_offsets, environ, messages_for, new_group, produce

# Killed scorer: the real champion through FareService, which then stops mid-batch: the batch is
# consumed, parsed, checked and scored, but nothing is pushed, published or committed.
STALLING_SCORER = """
import pathlib, sys, time
from chicago_taxi.core.config import load_settings
from chicago_taxi.streaming import batch

marker, scorer, scorers = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
real = batch.default_scorer(load_settings())

def stalling(trips):
    answers = real(trips)
    marker.write_text(str(len(trips)))
    time.sleep(900)  # the test kills the process here
    return answers

batch.drain(scorer=stalling, partitions=batch.scorer_partitions(scorer, scorers), max_messages=20, linger_seconds=0)
"""


def scorer_process(env: dict, group: str, spec: str) -> subprocess.Popen:
    """`python -m chicago_taxi.streaming drain --until-empty --scorer <spec>` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "chicago_taxi.streaming", "drain", "--until-empty", "--scorer", spec, "--max-messages", "50"],
        env={**env, "TAXI_STREAM_GROUP": group},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen, name: str, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{err[-4000:]}"
    return json.loads(out)


def consumed_partitions(result: dict) -> set[int]:
    return {int(p) for b in result["batches"] for p in b["offsets"]}


def duplicates(records: list[dict], key: str = "trip_id") -> dict[str, int]:
    """Per id seen more than once: how many extra copies (what a consumer de-duplicates)."""
    return {k: n - 1 for k, n in Counter(r[key] for r in records).items() if n > 1}


def test_two_scorers_side_by_side_each_on_its_partitions_score_every_trip_once(stream_env, clean_rows, kafka_broker):
    env, _ = stream_env
    prefix = f"part{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "partitions")
    messages, good, invalid = messages_for(prefix, clean_rows[:150], bad={7: "not-json", 80: "missing-field"})
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)
    assert len({p for p, _ in placed.values()}) == 3, "the raw topic's three partitions all hold trips"

    procs = {k: scorer_process(env, group, f"{k}/2") for k in (0, 1)}
    started = {k: time.monotonic() for k in procs}
    results = {k: finished(proc, f"scorer {k}/2") for k, proc in procs.items()}
    ended = {k: time.monotonic() for k in procs}

    assert results[0]["partitions"] == [0, 2] and results[1]["partitions"] == [1]
    for k in (0, 1):
        assert consumed_partitions(results[k]) <= set(results[k]["partitions"]), results[k]
        assert results[k]["consumed"] == sum(placed[key][0] in results[k]["partitions"] for key, _ in messages)
    assert max(started.values()) < min(ended.values()), "the two scorers did not run at the same time"
    predictions = outputs.read(topics.PREDICTIONS, prefix)
    assert Counter(p["trip_id"] for p in predictions) == Counter(good)  # every trip once: no loss, no duplicate
    assert Counter(d["_key"] for d in outputs.read(topics.RAW_TRIPS_DLQ, prefix)) == Counter(invalid)
    assert {p["source"]["partition"] for p in predictions} == {0, 1, 2}
    assert kafka_io.committed_offsets(kafka_broker, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


def test_a_scorer_killed_mid_batch_loses_nothing_when_its_partitions_move_to_the_survivor(stream_env, clean_rows, kafka_broker, tmp_path):
    env, _ = stream_env
    prefix = f"kill{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "kill")
    messages, good, _ = messages_for(prefix, clean_rows[200:320])
    outputs = Outputs(kafka_broker)
    placed = produce(kafka_broker, messages)
    before = kafka_io.committed_offsets(kafka_broker, group)

    # Scorer 1 of 2 (partition 1) stalls in its first batch and is killed there; scorer 0 of 2
    # (partitions 0 and 2) drains its own side by side.
    marker = tmp_path / "scored"
    script = tmp_path / "stalling_scorer.py"
    script.write_text(STALLING_SCORER)
    doomed = subprocess.Popen(
        [sys.executable, str(script), str(marker), "1", "2"],
        env={**env, "TAXI_STREAM_GROUP": group},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    survivor = scorer_process(env, group, "0/2")
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert doomed.poll() is None, f"the stalling scorer exited {doomed.returncode}:\n{doomed.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the stalling scorer scored nothing within 300 s"
        time.sleep(0.2)
    in_flight = int(marker.read_text())
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    first = finished(survivor, "scorer 0/2")
    assert first["partitions"] == [0, 2]
    committed = kafka_io.committed_offsets(kafka_broker, group)
    assert committed[1] == before[1], "the killed scorer committed its batch"  # nothing of partition 1 committed
    on_one = {key for key, (partition, _) in placed.items() if partition == 1}
    assert 0 < in_flight <= len(on_one)
    assert not {p["trip_id"] for p in outputs.read(topics.PREDICTIONS, prefix)} & on_one  # nothing of the killed batch published

    # The rebalance: one scorer now (scorer 0 of 1) owns every partition, partition 1 from its
    # committed offset, so it reads the killed batch again.
    after = finished(scorer_process(env, group, "0/1"), "scorer 0/1")
    assert after["partitions"] == [0, 1, 2]
    assert consumed_partitions(after) == {1} and after["consumed"] == len(on_one)
    predictions = outputs.read(topics.PREDICTIONS, prefix)
    extra = duplicates(predictions)
    print(f"\n[partitions] killed mid-batch with {in_flight} trip(s) scored in flight; duplicates after the move: {sum(extra.values())}", flush=True)
    assert set(p["trip_id"] for p in predictions) == good  # no trip lost
    # At least once: a copy is allowed only for a trip a killed scorer may have published before
    # its commit; this one was killed before publishing, so there is none.
    assert extra == {}
    assert kafka_io.committed_offsets(kafka_broker, group) == end_offsets(kafka_broker, topics.RAW_TRIPS)


# A fresh scorer process, as an Airflow task starts one per wake-up: it drains, then says which
# heavy libraries it had to import and how the champion was loaded.
FRESH_SCORER = """
import json, sys, traceback
HEAVY = ("tensorflow", "keras", "tensorflow_transform", "feast", "great_expectations")
first_import = {}  # heavy package -> the stack that imported it first (for the failure message)
class RecordingFinder:
    # First on sys.meta_path: sees every import, importlib.import_module's and entry points' too.
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.split(".")[0]
        if top in HEAVY and top not in sys.modules and top not in first_import:
            frames = [f for f in traceback.extract_stack()[:-1] if "importlib._bootstrap" not in f.filename]
            first_import[top] = "".join(traceback.format_list(frames))
        return None
sys.meta_path.insert(0, RecordingFinder)
from chicago_taxi.core.config import load_settings
from chicago_taxi.streaming import batch

result = batch.drain(linger_seconds=0)
scorer = batch.default_scorer(load_settings()).__self__.model.predictor
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"consumed": result["consumed"], "heavy": heavy, "scorer": scorer.scorer_note, "first_import": first_import}))
"""


def test_a_fresh_scorer_process_loads_the_champion_without_tensorflow(stream_env, clean_rows, kafka_broker):
    """The stream's cold start: the champion's numpy scorer bundle loads with numpy alone, so a
    new task process imports no TensorFlow (neither the graph nor Keras), and its predictions
    equal the traced graph's."""
    env, _ = stream_env
    prefix = f"cold{uuid.uuid4().hex[:6]}"
    group = new_group(kafka_broker, "cold")
    messages, good, _ = messages_for(prefix, clean_rows[:30])
    outputs = Outputs(kafka_broker)
    produce(kafka_broker, messages)
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_SCORER], env={**env, "TAXI_STREAM_GROUP": group}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # TensorFlow, Keras, tf.Transform and Feast: none (the push and the store reads use Feast's
    # Redis layout without the package, and MLflow's registry skips feast's header plugin).
    print(f"\n[cold start] heavy packages in a fresh scorer process: {report['heavy']}", flush=True)
    assert report["consumed"] == 30, report
    assert not set(report["heavy"]) & {"tensorflow", "keras", "tensorflow_transform", "feast"}, "\n".join(
        f"{k} imported by:\n{v}" for k, v in report["first_import"].items()
    )
    assert "bundle" in report["scorer"], report
    predictions = {p["trip_id"]: p for p in outputs.read(topics.PREDICTIONS, prefix)}
    assert set(predictions) == good
    # Each published fare is the traced TensorFlow graph's, given the inputs and store features the
    # prediction record says the scorer used (the champion loaded the long way, TAXI_SCORER=graph).
    with environ(env, TAXI_SCORER="graph"):
        champion = load_champion(load_settings())
    assert champion.predictor.fast is None
    frame = pd.DataFrame(
        [{**p["inputs"], **{k: (float("nan") if v is None else v) for k, v in p["store_features"].items()}} for p in predictions.values()]
    )
    graph_fares = champion.predictor.predict(frame)
    fares = [p["fare"] for p in predictions.values()]
    assert all(p["model_version"] == champion.version for p in predictions.values())
    assert max(abs(f - round(float(g), 2)) for f, g in zip(fares, graph_fares)) < 0.0051
