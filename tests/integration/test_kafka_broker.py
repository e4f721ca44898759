"""The real Kafka broker of scripts/kafka.sh: topics as declared, replayed trips land keyed by
trip_id, messages survive a restart, and nothing listens beyond 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import InvalidMessage, parse_trip
from chicago_taxi.ingest.replay import DEFECT_HEADER, replay
from fixtures.kafka import KAFKA_SCRIPT, REPO_ROOT, free_port, restart_broker, session_broker
from fixtures.streams import end_offsets
from fixtures.streams import messages_since as read_since


def test_broker_has_every_declared_topic_with_its_partitions_and_retention(kafka_broker):
    described = topics.describe_topics(kafka_broker)
    for spec in topics.TOPICS:
        assert described[spec.name] == {"partitions": spec.partitions, "retention_ms": spec.retention_ms}, spec.name


def test_ensure_topics_is_idempotent(kafka_broker):
    assert topics.ensure_topics(kafka_broker) == []


def test_script_start_on_a_running_broker_says_so_and_succeeds(kafka_broker):
    broker = session_broker()
    proc = subprocess.run(
        [str(KAFKA_SCRIPT), "start", str(broker.port), str(broker.controller_port)], env=broker.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stdout
    status = subprocess.run([str(KAFKA_SCRIPT), "status", str(broker.port)], env=broker.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "running" in status.stdout


def test_replay_lands_every_trip_keyed_by_trip_id_with_the_planned_bad_share(kafka_broker):
    before = end_offsets(kafka_broker, topics.RAW_TRIPS)
    sent = replay(bootstrap=kafka_broker, rate=0, limit=50, bad_share=0.2, seed=7, out=None)
    assert len(sent) == 50 and sum(kind == "bad" for _, kind in sent) == 10
    landed = read_since(kafka_broker, topics.RAW_TRIPS, before)
    assert len(landed) == 50
    kinds = dict(sent)
    assert sorted(m.key().decode() for m in landed) == sorted(kinds)
    for msg in landed:
        trip_id = msg.key().decode()
        defect = dict(msg.headers() or []).get(DEFECT_HEADER)
        assert (defect is not None) == (kinds[trip_id] == "bad"), trip_id
        if defect is not None:
            # Every injected defect is caught by the parser; real dirty rows may be too.
            with pytest.raises(InvalidMessage):
                parse_trip(msg.value())
        else:
            assert json.loads(msg.value())["trip_id"] == trip_id
    # Keyed messages: one trip always lands on one partition, and the load spreads.
    assert len({m.partition() for m in landed}) == 3


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


def test_topics_name_the_address_when_no_broker_answers():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(topics.BrokerUnavailable, match=re.escape(address)):
        topics.ensure_topics(address, timeout=2)


def test_topics_cli_fails_clearly_when_no_broker_answers():
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "chicago_taxi.ingest.topics", "list", "--bootstrap", address, "--timeout", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
    )
    assert proc.returncode == 1
    assert address in proc.stderr
