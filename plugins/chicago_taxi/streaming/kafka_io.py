"""Kafka positions, reads and commits of the scoring consumer group.

A consumer of its own group (`TAXI_STREAM_GROUP`, default `taxi-scoring`; never the trigger's
group) is `assign()`ed every partition at the group's committed offset (the partition's low
watermark when the group has none), so no group join or rebalance happens per run. Commits are
synchronous and carry the next offset to read per partition.

Scale-out: N scorers of the same group each take a fixed set of partitions (`partition_set`:
partition p goes to scorer p mod N). Offsets are committed per partition, so the scorers never
commit over each other, and whichever scorer owns a partition next (another N, a scorer restarted
after a kill) starts from that partition's committed offset: nothing is skipped, and what a
killed scorer read but did not commit is read again (at least once).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from chicago_taxi.core.config import StreamConfig
from chicago_taxi.ingest.topics import RAW_TRIPS, BrokerUnavailable, bootstrap_servers

log = logging.getLogger(__name__)


class CommitFailed(RuntimeError):
    """The results were published but the offsets could not be committed (they will be redelivered)."""


@dataclass
class Record:
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    timestamp_ms: int | None


def consumer_for(bootstrap: str, group: str):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "log_level": 0,  # a down broker is reported once, as BrokerUnavailable, not per retry
        }
    )


def partition_set(partitions: list[int], scorer: int, scorers: int) -> list[int]:
    """The partitions scorer `scorer` (0-based) of `scorers` owns: p mod scorers == scorer."""
    if scorers < 1 or not 0 <= scorer < scorers:
        raise ValueError(f"scorer {scorer} of {scorers}: expected 0 <= scorer < scorers")
    return [p for p in partitions if p % scorers == scorer]


def parse_partitions(text: str) -> list[int]:
    """ "0,2" -> [0, 2] (the CLI's --partitions)."""
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise ValueError(f"partitions {text!r}: expected comma-separated partition numbers, e.g. 0,2") from exc


def partitions_of(consumer, bootstrap: str, topic: str, timeout: float) -> list[int]:
    from confluent_kafka import KafkaException

    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} did not answer within {timeout:g} s: {exc}") from exc
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        problem = meta.error if meta is not None else "not in the metadata"
        raise BrokerUnavailable(
            f"topic {topic!r} is not available on the Kafka broker at {bootstrap} ({problem}); "
            f"create the topics with `python -m chicago_taxi.ingest.topics create`"
        )
    return sorted(meta.partitions)


def positions_of(consumer, bootstrap: str, group: str, topic: str, partitions: list[int], timeout: float) -> dict[int, tuple[int, int, int | None]]:
    """Per partition: (start offset for this run, high watermark, committed offset or None)."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    while True:
        try:
            committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)}
            break
        except KafkaException as exc:
            # A group's first use (or a restarted broker) answers NOT_COORDINATOR /
            # COORDINATOR_LOAD_IN_PROGRESS while the offsets topic is being set up: retry.
            error = exc.args[0] if exc.args else None
            if error is None or not getattr(error, "retriable", lambda: False)() or time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"Kafka broker at {bootstrap}: reading the committed offsets of group {group!r} on {topic} failed within {timeout:g} s: {exc}"
                ) from exc
            time.sleep(0.2)
    try:
        result = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            done = committed.get(p)
            done = done if done is not None and done >= 0 else None
            # No commit yet: from the beginning. A commit below the low watermark (retention
            # deleted those messages): from the low watermark.
            start = low if done is None else max(done, low)
            result[p] = (start, high, done)
        return result
    except KafkaException as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap}: reading the offsets of {topic} failed within {timeout:g} s: {exc}") from exc


def pending_messages(bootstrap: str | None = None, group: str | None = None, topic: str = RAW_TRIPS, timeout: float | None = None) -> dict[int, int]:
    """Messages of `topic` not yet committed by `group`, per partition (a cheap check for a DAG)."""
    config = StreamConfig.from_env()
    bootstrap = bootstrap or bootstrap_servers()
    group = group or config.group
    timeout = timeout or config.kafka_timeout
    consumer = consumer_for(bootstrap, group)
    try:
        positions = positions_of(consumer, bootstrap, group, topic, partitions_of(consumer, bootstrap, topic, timeout), timeout)
        return {p: high - start for p, (start, high, _) in positions.items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str | None = None, group: str | None = None, topic: str = RAW_TRIPS, timeout: float = 10.0) -> dict[int, int | None]:
    """The group's committed offset per partition (None when it never committed one)."""
    bootstrap = bootstrap or bootstrap_servers()
    group = group or StreamConfig.from_env().group
    consumer = consumer_for(bootstrap, group)
    try:
        positions = positions_of(consumer, bootstrap, group, topic, partitions_of(consumer, bootstrap, topic, timeout), timeout)
        return {p: done for p, (_, _, done) in positions.items()}
    finally:
        consumer.close()


def consume(
    consumer,
    bootstrap: str,
    topic: str,
    positions: dict[int, tuple[int, int, int | None]],
    max_messages: int,
    idle_seconds: float,
    max_seconds: float,
    first_wait: float,
) -> list[Record]:
    """Read from the start offsets until `max_messages`, every partition at its high watermark,
    `idle_seconds` without a message (`first_wait` for the first one: the watermarks say
    messages are there, a cold fetch must not end the run empty) or `max_seconds`."""
    from confluent_kafka import KafkaError, TopicPartition

    todo = {p: high for p, (start, high, _) in positions.items() if high > start}
    if not todo or max_messages <= 0:
        return []
    consumer.assign([TopicPartition(topic, p, positions[p][0]) for p in sorted(todo)])
    records: list[Record] = []
    deadline = time.monotonic() + max_seconds
    last_message = time.monotonic()
    last_error = None
    while len(records) < max_messages and todo:
        now = time.monotonic()
        idle_limit = idle_seconds if records else max(idle_seconds, first_wait)
        if now - last_message >= idle_limit or now >= deadline:
            break
        msg = consumer.poll(max(0.05, min(0.5, idle_limit - (now - last_message))))
        if msg is None:
            continue
        if msg.error() is not None:
            error = msg.error()
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise BrokerUnavailable(f"Kafka consumer on {bootstrap} failed: {error}")
            last_error = error  # transient (broker restarting): librdkafka retries by itself
            log.warning("consumer of %s on %s: %s", topic, bootstrap, error)
            continue
        last_message = time.monotonic()
        key = msg.key()
        stamp_type, stamp = msg.timestamp()
        records.append(
            Record(
                msg.partition(),
                msg.offset(),
                None if key is None else key.decode("utf-8", "replace"),
                msg.value(),
                stamp if stamp_type != 0 and stamp >= 0 else None,
            )
        )
        if msg.offset() + 1 >= todo.get(msg.partition(), float("inf")):
            todo.pop(msg.partition(), None)
    if not records and last_error is not None:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap}: no message could be read from {topic}: {last_error}")
    return records


def commit(consumer, bootstrap: str, topic: str, offsets: dict[int, int], timeout: float) -> None:
    """Synchronous commit of the next offset to read per partition."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        result = consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())], asynchronous=False)
    except KafkaException as exc:
        raise CommitFailed(
            f"committing offsets {offsets} of {topic} on {bootstrap} failed (the results are published; the messages will be processed again): {exc}"
        ) from exc
    errors = [f"partition {tp.partition}: {tp.error}" for tp in result or [] if tp.error is not None]
    if errors:
        raise CommitFailed(f"committing offsets of {topic} on {bootstrap} failed: {'; '.join(errors)}")


def offset_gaps(positions: dict[int, tuple[int, int, int | None]]) -> dict[int, int]:
    """Per partition, the messages the group never read because retention deleted them first (its
    committed offset is below the partition's low watermark, where `positions_of` starts it)."""
    return {p: start - done for p, (start, _, done) in positions.items() if done is not None and start > done}
