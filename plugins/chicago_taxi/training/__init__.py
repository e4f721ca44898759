"""Training: the steps the taxi_features and taxi_training DAGs call (`steps`), evaluation
against the tariff baseline and the champion (`evaluate`), and the MLflow registry (`registry`)."""
