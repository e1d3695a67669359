"""A secret scanner (detect-secrets) over every file git tracks: nothing secret is committed.
Test-only values carry an inline ``pragma: allowlist secret``; anything else it finds fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO, VENV_BIN

HOOK = str(Path(VENV_BIN) / "detect-secrets-hook")


def scan(files: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HOOK, *files], cwd=cwd, capture_output=True, text=True)


def test_no_secret_is_committed():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert len(files) > 100
    result = scan(files, REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scanner_finds_a_planted_secret(tmp_path):
    planted = tmp_path / "settings.py"
    planted.write_text('MLFLOW_TRACKING_URI = "http://admin:hunter2-prod-password@mlflow.example.org:5000"\n'  # pragma: allowlist secret
                       'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n')  # pragma: allowlist secret
    result = scan([str(planted)], tmp_path)
    assert result.returncode != 0
    assert "settings.py" in result.stdout and "Basic Auth Credentials" in result.stdout, result.stdout
