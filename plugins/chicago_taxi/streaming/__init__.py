"""Streaming: Kafka micro-batches from taxi-raw-data to predictions: consumer positions and
commits (`kafka_io`), the publisher (`publisher`), the micro-batch and drain loop (`batch`), the
output records (`records`) and the command line (`python -m chicago_taxi.streaming`)."""
