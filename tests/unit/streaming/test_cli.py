"""The streaming command line with no broker there (a closed loopback port)."""

from chicago_taxi.streaming import cli
from fixtures.env import free_port


def test_cli_reports_a_down_broker_as_an_error(monkeypatch, capsys):
    monkeypatch.setenv("TAXI_STREAM_KAFKA_TIMEOUT", "1")
    address = f"127.0.0.1:{free_port()}"
    assert cli.main(["drain", "--bootstrap", address]) == 1
    assert address in capsys.readouterr().err
