"""``python -m ecgml.ingest ecgs=PATH labs=PATH out=DIR [pairing.rule=window …]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ecgml.bounds import Bound
from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.ingest.groups import GroupRule
from ecgml.ingest.pairing import PairingRule
from ecgml.ingest.reading import WINDOWS, Cutting
from ecgml.ingest.run import IngestSettings, ingest, summary_lines
from ecgml.outputs.engine import check_address, check_reachable, local_workers

#: The numeric settings and their bounds (checked before anything is read).
SETTING_BOUNDS = {
    "fs": Bound(50, 10_000),
    "max_s": Bound(2, 3600),
    "pairing.window_h": Bound(0, 24 * 365, low_open=True),
    "groups.potassium_low": Bound(1, 10),
    "groups.potassium_high": Bound(1, 10),
    "groups.sodium_low": Bound(100, 180),
    "groups.sodium_high": Bound(100, 180),
    "n_jobs": Bound(1, 512, integer=True, optional=True),
}


def settings_from_config(cfg: DictConfig) -> IngestSettings:
    """The composed config as checked :class:`IngestSettings` (one line per problem)."""
    for key in ("ecgs", "labs", "out"):
        if not cfg.get(key):
            raise EcgmlError(f"no {key}: pass {key}=PATH (see docs/ingest.md)")
    problems = [
        f"{key}={OmegaConf.select(cfg, key)} {why}"
        for key, bound in SETTING_BOUNDS.items()
        if (why := bound.problem(OmegaConf.select(cfg, key)))
    ]
    if problems:
        raise EcgmlError(f"{'; '.join(problems)}: change the setting(s) and rerun")
    if cfg.windows not in WINDOWS:
        raise EcgmlError(f"windows={cfg.windows!r}: use one of {', '.join(WINDOWS)}")
    groups = cfg.groups
    address = check_address(cfg.get("engine", {}).get("address"))
    check_reachable(address)
    return IngestSettings(
        ecgs=Path(str(cfg.ecgs)),
        labs=Path(str(cfg.labs)),
        out=Path(str(cfg.out)),
        overwrite=bool(cfg.overwrite),
        cutting=Cutting(float(cfg.fs), float(cfg.max_s), str(cfg.windows)),
        pairing=PairingRule(str(cfg.pairing.rule), float(cfg.pairing.window_h)),
        groups=GroupRule(
            float(groups.potassium_low),
            float(groups.potassium_high),
            float(groups.sodium_low),
            float(groups.sodium_high),
            str(groups.comorbid),
            str(cfg.selection),
        ),
        itemids=_itemids(cfg.itemids),
        timezone=_timezone(cfg.pairing.get("timezone")),
        hash_ids=bool(cfg.hash_ids),
        hash_salt=None if cfg.get("hash_salt") is None else str(cfg.hash_salt),
        n_jobs=local_workers(cfg.get("n_jobs")),
        engine_address=address,
        progress=bool(cfg.get("progress", True)),
        pack=_pack_dtype(cfg.get("pack", "int16")),
    )


def _pack_dtype(value: Any) -> str | None:
    if value in (None, "none", False):
        return None
    if str(value) not in ("int16", "float32"):
        raise EcgmlError(f"pack={value!r}: use int16, float32 or null (CSV files only)")
    return str(value)


def _itemids(node: Any) -> dict[str, tuple[int, ...]]:
    raw = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    out: dict[str, tuple[int, ...]] = {}
    for analyte in ("potassium", "sodium"):
        values = raw.get(analyte, []) if isinstance(raw, dict) else []
        values = values if isinstance(values, list) else [values]
        try:
            out[analyte] = tuple(int(v) for v in values)
        except (TypeError, ValueError):
            raise EcgmlError(f"itemids.{analyte}={values!r}: list whole item ids") from None
    return out


def _timezone(value: Any) -> str | None:
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise EcgmlError(
            f"pairing.timezone={value!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)"
        ) from None
    return str(value)


def left_unchanged(cfg: DictConfig) -> str:
    # the run removed its temporary folder and stopped its workers on the way out
    return f"{cfg.get('out')} left unchanged"


@hydra_entry("ingest", interrupted=left_unchanged)
def main(cfg: DictConfig) -> None:
    report = ingest(settings_from_config(cfg))
    print("\n".join(summary_lines(report)), flush=True)
