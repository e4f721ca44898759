"""MLflow's request-header plugins in the processes that only read the registry (the stream's
scorer, the prediction service): feast's plugin is not loaded, so the feast package is not
imported by MLflow's first HTTP request; where feast is already imported, nothing changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures.env import REPO_ROOT

pytestmark = pytest.mark.unit

PROBE = """
import json, sys
{first}
from chicago_taxi.training import registry
registry.use_tracking_uri("http://127.0.0.1:9")
from mlflow.tracking.request_header.registry import _request_header_provider_registry, resolve_request_headers
headers = resolve_request_headers()
print(json.dumps({{
    "providers": [type(p).__module__ + "." + type(p).__name__ for p in _request_header_provider_registry],
    "feast_imported": "feast" in sys.modules,
    "user_agent": headers.get("User-Agent", ""),
}}))
"""


def probe(first: str = "") -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_registry_reader_does_not_load_feasts_header_plugin():
    report = probe()
    assert not report["feast_imported"], report
    assert not any(p.startswith("feast.") for p in report["providers"]), report
    # MLflow's own providers are all there, and headers still resolve.
    assert any(p.endswith("DefaultRequestHeaderProvider") for p in report["providers"]), report
    assert any(p.endswith("DatabricksRequestHeaderProvider") for p in report["providers"]), report
    assert report["user_agent"].startswith("mlflow-python-client"), report


def test_a_process_that_imported_feast_keeps_its_plugin():
    report = probe("import feast")
    assert report["feast_imported"]
    assert "feast.infra.data_sources.mlflow.auth.FeastMLflowHeaderProvider" in report["providers"], report
