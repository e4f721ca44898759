"""Which partitions each of N scorers owns, and how a call restricted to some is checked."""

import pytest

from chicago_taxi.core.config import StreamConfig
from chicago_taxi.streaming import cli
from chicago_taxi.streaming.batch import owned_partitions
from chicago_taxi.streaming.kafka_io import parse_partitions, partition_set
from fixtures.env import free_port


@pytest.mark.parametrize("scorers", [1, 2, 3, 4, 7])
def test_every_partition_has_exactly_one_scorer(scorers):
    partitions = list(range(6))
    sets = [partition_set(partitions, k, scorers) for k in range(scorers)]
    assert sorted(p for s in sets for p in s) == partitions
    assert all(len(s) in (len(partitions) // scorers, -(-len(partitions) // scorers)) for s in sets)


def test_three_partitions_and_two_scorers():
    assert partition_set([0, 1, 2], 0, 2) == [0, 2] and partition_set([0, 1, 2], 1, 2) == [1]


@pytest.mark.parametrize("scorer, scorers", [(2, 2), (-1, 2), (0, 0)])
def test_a_scorer_outside_its_count_is_refused(scorer, scorers):
    with pytest.raises(ValueError, match="scorer"):
        partition_set([0, 1, 2], scorer, scorers)


def test_partitions_that_the_topic_does_not_have_are_named():
    assert owned_partitions([0, 1, 2], None, "b:9092") == [0, 1, 2]
    assert owned_partitions([0, 1, 2], [2, 0], "b:9092") == [0, 2]
    with pytest.raises(ValueError, match=r"partitions \[5\] of taxi-raw-data do not exist on b:9092"):
        owned_partitions([0, 1, 2], [0, 5], "b:9092")


def test_partition_lists_from_the_command_line():
    assert parse_partitions("2,0, 2") == [0, 2]
    with pytest.raises(ValueError, match="comma-separated"):
        parse_partitions("0-2")


def test_scorers_from_the_environment(monkeypatch):
    assert StreamConfig.from_env().scorers == 1
    monkeypatch.setenv("TAXI_STREAM_SCORERS", "4")
    assert StreamConfig.from_env().scorers == 4
    monkeypatch.setenv("TAXI_STREAM_SCORERS", "0")
    assert StreamConfig.from_env().scorers == 1


def test_cli_scorer_against_a_down_broker_is_an_error(monkeypatch, capsys):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{free_port()}"
    assert cli.main(["drain", "--bootstrap", address, "--scorer", "0/2"]) == 1
    assert address in capsys.readouterr().err
