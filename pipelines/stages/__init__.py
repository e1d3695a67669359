"""The pipeline's stages, one module each (thin: read config, call recipes, record), and
the runner the training stages share."""
