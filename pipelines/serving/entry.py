"""The registered forecaster's models-from-code entry point: MLflow runs this file when it
logs or loads a ``<dataset>-emulator`` version (no pickled Python object in the model).
``models/`` and ``pipelines/serving/`` travel with the model as code paths."""

import mlflow

from pipelines.serving.forecaster import ForecasterModel

mlflow.models.set_model(ForecasterModel())
