"""Where taxi_tfx's component tasks run: their Celery queue always, a KubernetesExecutor pod
override only when TAXI_TFX_IMAGE names the TFX image (tests/unit/deploy/test_helm.py merges it
into a pod with the real kubernetes client and provider)."""

from __future__ import annotations

import sys

import pytest

from chicago_taxi.core.config import load_settings
from chicago_taxi.tfx_pipeline.placement import KubernetesClientMissing, component_task_kwargs


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TAXI_TFX_QUEUE", "TAXI_TFX_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_components_go_to_the_tfx_queue_and_keep_the_executors_pod(clean_env):
    assert component_task_kwargs() == {"queue": "tfx"}
    clean_env.setenv("TAXI_TFX_QUEUE", "tfx-large")
    assert component_task_kwargs(load_settings()) == {"queue": "tfx-large"}
    clean_env.setenv("TAXI_TFX_IMAGE", "  ")
    assert "executor_config" not in component_task_kwargs(), "a blank TAXI_TFX_IMAGE is unset"


def test_a_tfx_image_without_the_kubernetes_client_fails_saying_how_to_fix_it(clean_env):
    clean_env.setenv("TAXI_TFX_IMAGE", "registry.example.com/chicago-taxi-mlops-tfx:0.1.0")
    clean_env.setitem(sys.modules, "kubernetes", None)  # as in the development venv: not installed
    with pytest.raises(KubernetesClientMissing, match=r"registry\.example\.com/chicago-taxi-mlops-tfx:0\.1\.0.*requirements-kubernetes"):
        component_task_kwargs()
