#!/bin/sh
# The trainer image's entry point: every command runs in the project folder, whatever working
# directory the container starts in (`mlflow run --build-image` sets /mlflow/projects/code).
cd /home/latentops/latentops && exec "$@"
