"""Features: the Feast feature store: point-in-time aggregates (`aggregates`), the repository,
materialization and online reads (`store`), the atomic registry file (`registry_store`), and
for the stream the log of accepted trips and the push of fresh statistics (`stream_log`, `push`)."""
