"""The project's topics on the real broker (the session's, scripts/kafka.sh): declared partitions and
retention, and creating them again changes nothing."""

from __future__ import annotations

from chicago_taxi.ingest import topics


def test_broker_has_every_declared_topic_with_its_partitions_and_retention(kafka_broker):
    described = topics.describe_topics(kafka_broker)
    for spec in topics.TOPICS:
        assert described[spec.name] == {"partitions": spec.partitions, "retention_ms": spec.retention_ms}, spec.name


def test_ensure_topics_is_idempotent(kafka_broker):
    assert topics.ensure_topics(kafka_broker) == []
