"""MLflow: runs and their lineage, the Model Registry, evaluation results kept on registered versions."""
