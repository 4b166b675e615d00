"""ecgml: experiment-tracked detection of electrolyte disorders from single ECG beats."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root (the folder holding ``conf/``); entry points find their configs here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

DISORDERS = ("hyperkalemia", "hypokalemia", "hyponatremia")
GROUPS = ("normal", *DISORDERS)


def _register_resolvers() -> None:
    """``${ecgml_root:}`` in configs resolves to the repository root."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("ecgml_root"):
        OmegaConf.register_new_resolver("ecgml_root", lambda: str(PROJECT_ROOT))


_register_resolvers()
