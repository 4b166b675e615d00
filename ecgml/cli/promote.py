"""``python -m ecgml.promote run_id=…``: register a run's model as ``ecgml-<disorder>``, alias it.

The alias (``champion`` by default) is what ``python -m ecgml.predict`` loads.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.tracking import check_store
from ecgml.tracking.registry import promote_run


@hydra_entry("promote")
def main(cfg: DictConfig) -> None:
    if not cfg.run_id:
        raise EcgmlError("run_id=… is required: copy it from the `run_id:` line train printed")
    check_store(cfg.tracking_uri)
    version = promote_run(str(cfg.run_id), str(cfg.alias), cfg.tracking_uri)
    print(f"{version.name} v{version.version} (run {cfg.run_id}) is now '{cfg.alias}'", flush=True)
