"""The registered autoencoder's models-from-code entry point: MLflow runs this file when it
logs or loads a ``<dataset>-autoencoder`` version (no pickled Python object in the model; the
weights are a safetensors file). ``models/`` and ``pipelines/serving/`` travel with the model
as code paths."""

import mlflow

from pipelines.serving.autoencoder import AutoencoderModel

mlflow.models.set_model(AutoencoderModel())
