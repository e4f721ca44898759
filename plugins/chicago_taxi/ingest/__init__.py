"""Ingest: raw trips into the platform: the windowed monthly extract (the first DAG step), the
Kafka trip message parser (Chicago and legacy shapes), the replay tool, and the topic catalogue."""
