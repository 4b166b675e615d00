"""``python -m ecgml.relocate_store``: point a copied or moved local MLflow store at its own
artifact folder (:mod:`ecgml.tracking.relocate`)."""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.tracking import resolve_store
from ecgml.tracking.relocate import relocate_store
from ecgml.tracking.store import foreign_locations, local_path, probe_sqlite, ready_store


def relocate(cfg: DictConfig) -> dict[str, int]:
    """Rewrite the locations; print what changed and any experiment whose files are missing."""
    store = resolve_store(cfg.tracking_uri)
    if store.artifact_root is not None:
        probe_sqlite(store)
        ready_store(store)
    foreign = foreign_locations(store)
    counts = relocate_store(store)
    if not foreign:
        print(f"{store.tracking_uri}: every experiment already keeps its artifacts here")
        return counts
    print(
        f"{store.tracking_uri}: {counts['experiments']} experiments, {counts['runs']} runs, "
        f"{counts['logged_models']} logged models and {counts['model_versions']} model-version "
        f"fields now point at {store.artifact_root}"
    )
    for item in foreign:
        folder = local_path(item.wanted)
        if folder is not None and not folder.is_dir():
            print(
                f"warning: {folder} does not exist: copy {local_path(item.location)} there for "
                f"the old runs of {item.name!r} to find their files"
            )
    return counts


main = hydra_entry("relocate_store")(relocate)
