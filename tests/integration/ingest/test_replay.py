"""The replay tool against the real broker: every trip lands keyed by its trip_id, with the planned
share of injected defects, and keyed trips spread over the partitions."""

from __future__ import annotations

import json

import pytest

from chicago_taxi.ingest import topics
from chicago_taxi.ingest.messages import InvalidMessage, parse_trip
from chicago_taxi.ingest.replay import DEFECT_HEADER, replay
from fixtures.streams import end_offsets
from fixtures.streams import messages_since as read_since


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
