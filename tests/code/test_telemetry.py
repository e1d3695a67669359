"""GPU telemetry: MLflow's system metrics record each GPU's utilisation and memory through
``nvidia-ml-py`` (``pynvml``); without that package they record none, silently. The stage
tests check the recorded metrics per device (none on a CPU); this checks the library is there."""

from __future__ import annotations

import pytest
import torch


def test_mlflow_gpu_monitor_lacks_only_a_gpu_never_its_library():
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

    try:
        monitor = GPUMonitor()
    except ImportError as error:  # nvidia-ml-py missing: MLflow would skip GPU metrics without a word
        pytest.fail(f"MLflow cannot record GPU metrics: {error}")
    except RuntimeError as error:  # NVML found no driver or device: a CPU machine
        assert not torch.cuda.is_available(), error
        assert "NVML" in str(error)
    else:
        assert monitor.num_gpus == torch.cuda.device_count() > 0
