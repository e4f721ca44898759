"""Publishing one batch's results; nothing is committed unless the broker acknowledged all."""

from __future__ import annotations

from collections import Counter

from chicago_taxi.core.jsonable import encoded
from chicago_taxi.core.process_cache import cached, forget

# Delivery reports are served every this many sends (a poll per message cost more than the send).
POLL_EVERY = 500


class PublishFailed(RuntimeError):
    """Some results were not acknowledged by the broker: nothing was committed."""


class Publisher:
    """One batch's publishing; every delivery report is checked before anything is committed.

    The idempotent producer is kept per process (its first flush costs ~0.5 s for the producer
    id); after a failed flush it is dropped, so the next call starts with an empty queue."""

    def __init__(self, bootstrap: str, timeout: float):
        from confluent_kafka import Producer

        self.bootstrap, self.timeout = bootstrap, timeout
        self._key = ("producer", bootstrap, timeout)
        self.producer = cached(
            self._key,
            lambda: Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "enable.idempotence": True,  # acks=all, no duplicates from the producer's own retries
                    "linger.ms": 5,
                    "message.timeout.ms": int(timeout * 1000),
                    "log_level": 0,
                }
            ),
        )
        self.failed: list[str] = []
        self.delivered = Counter()
        self._queued = 0

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()} key {msg.key()!r}: {err}")
        else:
            self.delivered[msg.topic()] += 1

    def send(self, topic: str, key: str | None, value: dict | bytes) -> None:
        """Queue one message: `value` a record, or its JSON already encoded (`encoded`)."""
        payload = value if isinstance(value, bytes) else encoded(value)
        while True:
            try:
                self.producer.produce(topic, key=None if key is None else key.encode(), value=payload, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self._queued += 1
        if self._queued % POLL_EVERY == 0:  # serve delivery reports now and then; flush() serves the rest
            self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(self.timeout)
        if remaining:
            self.failed.append(f"{remaining} message(s) not acknowledged within {self.timeout:g} s")
        if self.failed:
            forget(self._key)
            self.producer.purge()
            raise PublishFailed(
                f"publishing to the Kafka broker at {self.bootstrap} failed for {len(self.failed)} message(s), "
                f"offsets not committed: {self.failed[0]}"
            )
