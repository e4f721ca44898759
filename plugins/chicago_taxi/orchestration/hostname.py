"""The host name Airflow records for each task instance (`[core] hostname_callable`).

Celery workers on one machine share its host name, so the UI's "Host" and the REST API's
`hostname` could not say which worker ran a task. scripts/airflow_stack.sh starts each worker
with TAXI_WORKER_NAME=worker-K, and its task processes report `worker-K@<fqdn>`, the name the
worker has in Celery. Without TAXI_WORKER_NAME (the LocalExecutor, a worker on a host of its own)
it is Airflow's default, the fully qualified domain name.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    name = os.environ.get("TAXI_WORKER_NAME", "").strip()
    fqdn = socket.getfqdn()
    return f"{name}@{fqdn}" if name else fqdn
