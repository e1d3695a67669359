"""The registered assimilator's models-from-code entry point: MLflow runs this file when it
logs or loads a ``<dataset>-assimilator`` version (no pickled Python object in the model).
``models/`` and ``pipelines/serving/`` travel with the model as code paths."""

import mlflow

from pipelines.serving.assimilator_model import AssimilatorModel

mlflow.models.set_model(AssimilatorModel())
