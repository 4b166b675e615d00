"""A local store that was copied or moved: its runs still point at the first folder.

MLflow's sqlite store keeps every experiment's, run's and logged model's artifact location as
an absolute ``file://`` URI. A copied ``mlruns/`` (another checkout, a colleague's disk, a
backup) therefore writes its new runs' artifacts into the *original* folder, without a word.
:func:`~ecgml.tracking.store.foreign_locations` finds ecgml's experiments whose artifacts live
outside the store's own ``artifacts/`` folder (the store check refuses to start on them, in one
line), and :func:`relocate_store` (``python -m ecgml.relocate_store``) points them, their runs,
logged models and model versions at the store's folder, where a copy of ``mlruns/`` carries
their files.
Tracking servers keep their own artifact locations (``mlflow server --artifacts-destination``)
and are never touched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ecgml.errors import EcgmlError
from ecgml.tracking.store import ForeignLocation, TrackingStore, foreign_locations, store_lock

#: (table, column, the column naming its experiment or None) holding artifact locations.
LOCATION_COLUMNS = (
    ("runs", "artifact_uri", "experiment_id"),
    ("logged_models", "artifact_location", "experiment_id"),
    ("model_versions", "storage_location", None),
    ("model_versions", "source", None),
)


def relocate_store(store: TrackingStore) -> dict[str, int]:
    """Point every foreign experiment (and its runs, logged models and model versions) at the
    store's own folder, in one transaction; returns how many rows of each kind changed."""
    if store.artifact_root is None:
        raise EcgmlError(
            f"{store.tracking_uri} is a tracking server: its artifact locations are the "
            "server's (mlflow server --artifacts-destination); nothing to relocate"
        )
    database = Path(store.tracking_uri.removeprefix("sqlite:///"))
    counts = {"experiments": 0, "runs": 0, "logged_models": 0, "model_versions": 0}
    with store_lock(store):
        foreign = foreign_locations(store)
        connection = sqlite3.connect(database)
        try:
            with connection:  # one transaction: all rewritten, or none
                for item in foreign:
                    rewrite_experiment(connection, item, counts)
        finally:
            connection.close()
    return counts


def rewrite_experiment(
    connection: sqlite3.Connection, item: ForeignLocation, counts: dict[str, int]
) -> None:
    """Replace the experiment's old location prefix by the wanted one wherever it is stored."""
    old, new = item.location.rstrip("/"), item.wanted.rstrip("/")
    cursor = connection.execute(
        "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
        (new, int(item.experiment_id)),
    )
    counts["experiments"] += cursor.rowcount
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    for table, column, experiment_column in LOCATION_COLUMNS:
        if table not in tables:
            continue
        where = f"{column} LIKE ? ESCAPE '\\'"
        args: list[object] = [new, len(old) + 1, escape_like(old) + "/%"]
        if experiment_column is not None:
            where += f" AND {experiment_column} = ?"
            args.append(int(item.experiment_id))
        cursor = connection.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {where}", args
        )
        counts[table] += cursor.rowcount


def escape_like(text: str) -> str:
    """``text`` as a literal in a SQL ``LIKE`` pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
