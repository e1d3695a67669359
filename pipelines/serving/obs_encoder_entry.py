"""The registered observation encoder's models-from-code entry point: MLflow runs this file
when it logs or loads a ``<dataset>-obs-encoder`` version (no pickled Python object in the
model; the weights are a safetensors file). ``models/`` and ``pipelines/serving/`` travel
with the model as code paths."""

import mlflow

from pipelines.serving.observation import ObsEncoderModel

mlflow.models.set_model(ObsEncoderModel())
