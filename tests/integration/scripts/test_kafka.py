"""The broker of scripts/kafka.sh (run by the kafka_broker fixture, as `make kafka` runs it): a second
start says so and succeeds, messages survive a restart, and nothing listens beyond 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess

from chicago_taxi.ingest import topics
from chicago_taxi.ingest.replay import replay
from fixtures.kafka import KAFKA_SCRIPT, restart_broker, session_broker
from fixtures.streams import end_offsets
from fixtures.streams import messages_since as read_since


def test_script_start_on_a_running_broker_says_so_and_succeeds(kafka_broker):
    broker = session_broker()
    proc = subprocess.run(
        [str(KAFKA_SCRIPT), "start", str(broker.port), str(broker.controller_port)], env=broker.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stdout
    status = subprocess.run([str(KAFKA_SCRIPT), "status", str(broker.port)], env=broker.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "running" in status.stdout


def test_messages_survive_a_broker_restart(kafka_broker):
    before = end_offsets(kafka_broker, topics.RAW_TRIPS)
    sent = replay(bootstrap=kafka_broker, rate=0, limit=20, legacy=True, out=None)
    broker = restart_broker()
    assert broker.bootstrap == kafka_broker
    landed = read_since(kafka_broker, topics.RAW_TRIPS, before)
    assert sorted(m.key().decode() for m in landed) == sorted(trip_id for trip_id, _ in sent)
    assert all(json.loads(m.value())["trip_id"] == m.key().decode() and "pickup_datetime" in json.loads(m.value()) for m in landed)
    print(f"kafka restart: stop {broker.stop_seconds} s, start {broker.start_seconds} s")


def test_broker_listens_only_on_loopback(kafka_broker):
    pid = session_broker().pid
    listing = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True).stdout
    sockets = [line.split()[3] for line in listing.splitlines() if f"pid={pid}," in line]
    broker = session_broker()
    assert {f"127.0.0.1:{broker.port}", f"127.0.0.1:{broker.controller_port}"} <= set(sockets), listing
    assert all(re.match(r"127\.0\.0\.1:\d+$", address) for address in sockets), sockets
