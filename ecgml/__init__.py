"""ecgml: experiment-tracked detection of electrolyte disorders from single ECG beats."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root (the folder holding ``conf/``); entry points find their configs here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

DISORDERS = ("hyperkalemia", "hypokalemia", "hyponatremia")
GROUPS = ("normal", *DISORDERS)


def _job_output_dir() -> str:
    """Hydra's output folder for this job; ``outputs/library`` when called without Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.output_dir)
    return str(PROJECT_ROOT / "outputs" / "library")


def _register_resolvers() -> None:
    """``${ecgml_root:}`` → the repository root; ``${ecgml_output_dir:}`` → the job's folder."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("ecgml_root"):
        OmegaConf.register_new_resolver("ecgml_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("ecgml_output_dir"):
        OmegaConf.register_new_resolver("ecgml_output_dir", _job_output_dir)


_register_resolvers()

# The typed schemas of conf/ (ecgml.schemas imports nothing of ecgml): composing needs them.
from ecgml.schemas import register_schemas  # noqa: E402

register_schemas()
