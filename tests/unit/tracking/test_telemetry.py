"""MLflow's usage telemetry is off in ecgml's commands unless the user turns it on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PRINT_SETTING = "import ecgml, os; print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'))"


def setting_after_import(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    if env_value is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", PRINT_SETTING], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_importing_ecgml_disables_mlflow_telemetry() -> None:
    assert setting_after_import(None) == "true"


@pytest.mark.parametrize("user_value", ["false", "true"])
def test_the_users_own_setting_wins(user_value: str) -> None:
    assert setting_after_import(user_value) == user_value
