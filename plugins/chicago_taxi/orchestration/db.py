"""Connection arguments for Airflow's embedded SQLite metadata DB (scripts/env.sh points
`[database] sql_alchemy_connect_args` here when the DB is SQLite).

SQLite has one writer at a time. With the api-server, scheduler, DAG processor, triggerer and
task runners all writing, a CLI call such as `airflow backfill create` met "database is locked":
- `timeout`: wait up to a minute for the write lock (Python's sqlite3 gives up after 5 s);
- `isolation_level="IMMEDIATE"`: the transaction that sqlite3 opens before the first write is
  `BEGIN IMMEDIATE`, which takes the write lock at once (waiting up to `timeout`). A deferred
  transaction takes it only at its first write, and in WAL mode (Airflow's choice for SQLite)
  fails at once, without waiting, when another connection committed in between.
"""

SQLITE_CONNECT_ARGS = {"timeout": 60, "isolation_level": "IMMEDIATE"}
# aiosqlite (the api-server's async engine): the timeout only; SQLAlchemy drives its transactions.
SQLITE_CONNECT_ARGS_ASYNC = {"timeout": 60}
