"""Where taxi_tfx's component tasks run: on a worker that has the TFX runtime.

- CeleryExecutor: the component tasks go to a queue of their own (`Settings.tfx_queue`,
  TAXI_TFX_QUEUE, default "tfx"), which only workers with the runtime consume: the TFX image's
  (runtime/tfx/Dockerfile, target worker; compose's airflow-worker-tfx, the Helm Celery overlay's
  `tfx` worker set) and, natively, every worker of scripts/airflow_stack.sh (the bubblewrap runtime).
- KubernetesExecutor: with TAXI_TFX_IMAGE set, each component task's pod runs that image: a
  pod_override of the container "base", the one Airflow's pod template runs a task in.
- LocalExecutor and `airflow dags test` ignore both: the task runs beside the scheduler, and
  scripts/tfx_runtime.sh finds the runtime there (bubblewrap, the TFX image) or says what to do.

The host-side steps (extract, the gates, prepare_examples, register_tfx_model) run anywhere.
"""

from __future__ import annotations

from chicago_taxi.core.config import Settings, load_settings

# The container of the KubernetesExecutor's pod template that runs the task (Airflow's convention).
BASE_CONTAINER = "base"


class KubernetesClientMissing(ImportError):
    """TAXI_TFX_IMAGE asks for a pod override, but the kubernetes client is not installed."""


def component_task_kwargs(settings: Settings | None = None) -> dict:
    """The `@task` arguments of a TFX component task: its queue, and the pod override when
    TAXI_TFX_IMAGE names the TFX image."""
    settings = settings or load_settings()
    kwargs: dict = {"queue": settings.tfx_queue}
    if settings.tfx_image:
        kwargs["executor_config"] = {"pod_override": tfx_pod_override(settings.tfx_image)}
    return kwargs


def tfx_pod_override(image: str):
    """A V1Pod whose container "base" runs `image` (merged over the pod template's by the executor)."""
    try:
        from kubernetes.client import models as k8s
    except ImportError as exc:
        raise KubernetesClientMissing(
            f"TAXI_TFX_IMAGE={image!r} gives taxi_tfx's component tasks KubernetesExecutor pods of that image, but the "
            "kubernetes client is not installed: build the image with deploy/requirements-kubernetes.txt "
            "(--build-arg EXTRA_REQUIREMENTS=...), or unset TAXI_TFX_IMAGE where the KubernetesExecutor does not run"
        ) from exc
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name=BASE_CONTAINER, image=image)]))
