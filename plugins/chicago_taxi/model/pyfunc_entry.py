"""MLflow "models from code" entry point: the pyfunc logged for each registered version."""

import mlflow

from chicago_taxi.model.predictor import FarePyfunc

mlflow.models.set_model(FarePyfunc())
