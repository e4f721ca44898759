"""The wake-up trigger of the taxi_stream DAG: the Kafka provider's shared-stream trigger, which
commits its offsets only after Airflow stored the event (a triggerer crash means redelivery, not
loss), with two changes:

- the event carries a fingerprint of the message (topic, size, sha1 prefix), not the message: the
  run drains Kafka itself, so the payload is not needed, and the stock trigger decodes every
  message as UTF-8, so one non-UTF-8 message (which the run must dead-letter) would crash the
  watcher for everyone;
- `serialize` names this class, so the triggerer rebuilds this trigger and not the stock one.

Anything the triggerer imports must be on its path: plugins/ is, the DAG folder is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.apache.kafka.triggers.shared_stream import KafkaSharedStreamTrigger
from airflow.triggers.base import TriggerEvent


class RawTripsWakeUpTrigger(KafkaSharedStreamTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for value in shared_stream:
            yield TriggerEvent(wake_up_payload(self.topics, value))


def wake_up_payload(topics: list[str], value: Any) -> dict:
    raw = value if isinstance(value, bytes) else str(value if value is not None else "").encode("utf-8", "replace")
    return {"topics": list(topics), "bytes": len(raw), "sha1": hashlib.sha1(raw).hexdigest()[:12]}
