"""Topic administration with no broker there (a closed loopback port): the error names the address,
in the library and in its command line, within the timeout."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from chicago_taxi.ingest import topics
from fixtures.env import REPO_ROOT, free_port


def test_topics_name_the_address_when_no_broker_answers():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(topics.BrokerUnavailable, match=re.escape(address)):
        topics.ensure_topics(address, timeout=2)


def test_topics_cli_fails_clearly_when_no_broker_answers():
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "chicago_taxi.ingest.topics", "list", "--bootstrap", address, "--timeout", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
    )
    assert proc.returncode == 1
    assert address in proc.stderr
