"""Model: the code that travels with a registered model, so training and serving cannot skew:
the tf.Transform `preprocessing_fn` (`transform`), the Keras network (`network`), and the
predictor that applies both to raw trips (`predictor`, logged as an MLflow pyfunc)."""
