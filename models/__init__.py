"""What is learned: autoencoders, emulators (pure PyTorch + azula, heavyball). Never imports
MLOps libraries (mlflow, dvc, optuna) nor ``pipelines``."""
