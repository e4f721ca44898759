"""The project's Kafka topics, declared once, and the idempotent step that creates them.

Every producer, consumer, DAG and test names a topic through this module; `scripts/kafka.sh
topics` and `python -m chicago_taxi.ingest.topics create` create whatever is missing on the broker.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from chicago_taxi.core.config import DEFAULT_BOOTSTRAP, kafka_bootstrap, kafka_replication_factor

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, partition count, retention and what flows through it."""

    name: str
    partitions: int
    retention_ms: int
    purpose: str

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}


RAW_TRIPS = "taxi-raw-data"
RAW_TRIPS_DLQ = "taxi-raw-data-dlq"
FEATURES = "taxi-features"
PREDICTIONS = "taxi-predictions"
MODEL_METRICS = "taxi-model-metrics"
ALERTS = "taxi-alerts"

TOPICS: tuple[TopicSpec, ...] = (
    # Raw trips are replayable for a week, long enough to rebuild a day's features after an outage.
    TopicSpec(RAW_TRIPS, 3, 7 * DAY_MS, "trip messages from upstream (Chicago or legacy shape), keyed by trip_id"),
    TopicSpec(RAW_TRIPS_DLQ, 1, 7 * DAY_MS, "raw trip messages that failed parsing, with the reason and source offset"),
    TopicSpec(FEATURES, 3, 1 * DAY_MS, "per-trip online feature updates pushed to the feature store"),
    TopicSpec(PREDICTIONS, 3, 1 * DAY_MS, "fare predictions for scored trips, keyed by trip_id"),
    # Metrics and alerts are small and read by people: keep a month for trend and post-mortems.
    TopicSpec(MODEL_METRICS, 1, 30 * DAY_MS, "drift and quality metrics from the monitoring DAG"),
    TopicSpec(ALERTS, 1, 30 * DAY_MS, "threshold breaches raised by monitoring"),
)
TOPICS_BY_NAME = {t.name: t for t in TOPICS}


class BrokerUnavailable(RuntimeError):
    """The Kafka broker at the given address did not answer in time."""


# The broker address and replication factor come from the environment (core.config).
bootstrap_servers = kafka_bootstrap
replication_factor = kafka_replication_factor


def admin_client(bootstrap: str | None = None):
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka's own "connection refused" lines would repeat every retry; the
    # timeout below raises one BrokerUnavailable that names the address instead.
    return AdminClient({"bootstrap.servers": bootstrap or bootstrap_servers(), "log_level": 0})


def _existing_topics(admin, bootstrap: str, timeout: float) -> dict:
    from confluent_kafka import KafkaException

    try:
        return admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} did not answer within {timeout:g} s: {exc}") from exc


def ensure_topics(bootstrap: str | None = None, timeout: float = 15.0, topics: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create the declared topics that do not exist yet; return the names created (idempotent)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    bootstrap = bootstrap or bootstrap_servers()
    admin = admin_client(bootstrap)
    existing = _existing_topics(admin, bootstrap, timeout)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    rf = replication_factor()
    futures = admin.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=rf, config=t.config) for t in missing],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            # Another process created it between our listing and our request: that is fine.
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerUnavailable(f"could not create topic {name!r} on {bootstrap}: {exc}") from exc
        except Exception as exc:  # concurrent.futures.TimeoutError
            raise BrokerUnavailable(f"creating topic {name!r} on {bootstrap} did not finish within {timeout:g} s: {exc!r}") from exc
    return sorted(created)


def describe_topics(bootstrap: str | None = None, timeout: float = 15.0) -> dict[str, dict]:
    """Partitions and retention.ms of every non-internal topic on the broker."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    bootstrap = bootstrap or bootstrap_servers()
    admin = admin_client(bootstrap)
    existing = {name: meta for name, meta in _existing_topics(admin, bootstrap, timeout).items() if not name.startswith("__")}
    result = {name: {"partitions": len(meta.partitions), "retention_ms": None} for name, meta in existing.items()}
    if not existing:
        return result
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in existing], request_timeout=timeout)
    for resource, future in futures.items():
        configs = future.result(timeout=timeout)
        result[resource.name]["retention_ms"] = int(configs["retention.ms"].value)
    return dict(sorted(result.items()))


def watch(
    bootstrap: str | None = None,
    topics: tuple[str, ...] = (PREDICTIONS, RAW_TRIPS_DLQ, ALERTS),
    from_beginning: bool = False,
    limit: int | None = None,
    out=sys.stdout,
) -> int:
    """Print one line per message of `topics` as it arrives (from their end, or their beginning);
    returns how many were printed. A consumer group of its own, nothing committed."""
    import json
    import uuid

    from confluent_kafka import Consumer

    bootstrap = bootstrap or bootstrap_servers()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"watch-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "log_level": 0,
        }
    )
    consumer.subscribe(list(topics))
    printed = 0
    try:
        while limit is None or printed < limit:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            try:
                body = json.loads(msg.value())
            except ValueError:
                body = {"raw": msg.value()[:200].decode("utf-8", "replace")}
            if msg.topic() == PREDICTIONS:
                line = (
                    f"{body.get('trip_id')}: fare {body.get('fare'):.2f} (model v{body.get('model_version')}"
                    f"{', degraded' if body.get('degraded') else ''}, defaulted {body.get('features_defaulted') or []})"
                )
            elif msg.topic() == RAW_TRIPS_DLQ:
                source = body.get("source") or {}
                line = f"DEAD LETTER {body.get('trip_id')}: {body.get('reason')} (from {source.get('topic')}[{source.get('partition')}]@{source.get('offset')})"
            else:
                line = json.dumps(body)
            print(f"{msg.topic()} {line}", file=out, flush=True)
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return printed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chicago_taxi.ingest.topics", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["create", "list", "watch"], help="watch: follow predictions, dead letters and alerts")
    parser.add_argument("--from-beginning", action="store_true", help="watch: start at the topics' beginning, not their end")
    parser.add_argument("--bootstrap", default=None, help=f"broker address (default $KAFKA_BOOTSTRAP_SERVERS or {DEFAULT_BOOTSTRAP})")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the broker")
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap or bootstrap_servers()
    try:
        if args.command == "watch":
            watch(bootstrap, from_beginning=args.from_beginning)
        elif args.command == "create":
            created = ensure_topics(bootstrap, args.timeout)
            for spec in TOPICS:
                state = "created" if spec.name in created else "exists"
                print(f"{spec.name:<22} {state:<8} {spec.partitions} partition(s), retention {spec.retention_ms // DAY_MS} d")
        else:
            for name, info in describe_topics(bootstrap, args.timeout).items():
                days = "?" if info["retention_ms"] is None else f"{info['retention_ms'] / DAY_MS:g}"
                declared = "" if name in TOPICS_BY_NAME else "  (not declared by the project)"
                print(f"{name:<22} {info['partitions']} partition(s), retention {days} d{declared}")
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
