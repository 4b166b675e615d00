"""ecgml: experiment-tracked detection of electrolyte disorders from single ECG beats."""

import os
import sys
from pathlib import Path

# MLflow reports usage to its developers unless told not to, and reads the switch when it is
# first imported: ecgml makes no network calls the user did not ask for. The user's own
# MLFLOW_DISABLE_TELEMETRY (e.g. false) wins.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"


def _one_line_interrupt(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """Ctrl-C while a ``python -m ecgml.<name>`` command is still importing: one line, not a
    traceback (once the command runs, its entry point reports the interrupt itself)."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted (Ctrl-C) while starting; nothing was written", file=sys.stderr)
        return
    sys.__excepthook__(kind, value, tb)  # type: ignore[arg-type]


# ``sys.argv[0]`` is "-m" only while Python resolves a ``-m`` module: ecgml is being run as a
# command, not imported by a program (whose own excepthook stays untouched).
if sys.argv[:1] == ["-m"]:
    sys.excepthook = _one_line_interrupt

#: The repository root (the folder holding ``conf/``); entry points find their configs here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

DISORDERS = ("hyperkalemia", "hypokalemia", "hyponatremia")
GROUPS = ("normal", *DISORDERS)
#: The 12 standard ECG leads, in the usual order (record stores, digitized pages, renders).
TWELVE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _job_output_dir() -> str:
    """Hydra's output folder for this job; ``outputs/library`` when called without Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.output_dir)
    return str(PROJECT_ROOT / "outputs" / "library")


def _register_resolvers() -> None:
    """``${ecgml_root:}`` → the repository root; ``${ecgml_output_dir:}`` → the job's folder;
    ``${ecgml_subject:…}`` → a run's disorder or task."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("ecgml_root"):
        OmegaConf.register_new_resolver("ecgml_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("ecgml_output_dir"):
        OmegaConf.register_new_resolver("ecgml_output_dir", _job_output_dir)
    if not OmegaConf.has_resolver("ecgml_subject"):
        OmegaConf.register_new_resolver("ecgml_subject", run_subject)


def run_subject(task: str, disorder: str) -> str:
    """What a run is about, for its experiment, name and title: its disorder for the binary
    task (``classify`` its old name) and pretraining, else the task (multilabel, potassium,
    sodium). ``${ecgml_subject:${task.name},${disorder.name}}`` in the config."""
    return disorder if task in ("binary", "classify", "pretrain") else task


_register_resolvers()

# The typed schemas of conf/ (ecgml.schemas imports nothing of ecgml): composing needs them.
from ecgml.schemas import register_schemas  # noqa: E402

register_schemas()
