"""The one signal-CSV parser: the strict policy (record stores, ingest) and the lenient one
(files handed to predict) read the same file the same way and differ only where they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgml.ecgfile import EcgFileProblem
from ecgml.ecgfile.signalcsv import parse_signal_csv


def _write(path: Path, header: str, rows: int = 1000, fs: float = 500.0, step: float = 0.0) -> Path:
    lines = [header]
    n_leads = header.count(",") + header.count(";")
    for k in range(rows):
        t = k / fs + (step if k == rows // 2 else 0.0)
        values = [f"{0.1 * j + np.sin(k / 7):.5f}" for j in range(n_leads)]
        lines.append(",".join([f"{t:.6f}", *values]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_both_policies_read_a_store_file_alike(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "time_s,I,mv,V1")
    strict, lenient = parse_signal_csv(path), parse_signal_csv(path, lenient=True)
    assert strict.fs == lenient.fs == 500.0
    assert strict.leads == lenient.leads == ("I", "II", "V1")
    assert np.array_equal(strict.signal, lenient.signal) and strict.signal.shape == (3, 1000)
    assert np.isclose(strict.signal[1, 7], 0.1 + np.sin(1.0), atol=1e-5)


def test_only_the_lenient_policy_passes_over_other_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "TIME_S,II,resp")
    with pytest.raises(EcgFileProblem) as caught:
        parse_signal_csv(_write(tmp_path / "s.csv", "time_s,II,resp"))
    assert caught.value.reason == "unknown_lead" and "'resp'" in caught.value.detail
    table = parse_signal_csv(path, lenient=True)
    assert table.leads == ("II",) and table.ignored == ("resp",)


@pytest.mark.parametrize(
    ("header", "kwargs", "reason", "mention"),
    [
        ("time_s;mv", {}, "wrong_format", "separator looks like ';'"),
        ("t,mv", {}, "wrong_format", "needs a time_s column"),
        ("time_s,mv,II", {}, "inconsistent_leads", "appears twice"),
        ("time_s,mv", {"step": 0.001}, "unreadable", "equal steps"),
        ("time_s,mv", {"fs": 0.5}, "unreadable", "divide it by 1000"),
        ("time_s,mv", {"rows": 1}, "too_short", "1 sample"),
    ],
)
def test_unusable_files_name_their_reason(
    tmp_path: Path, header: str, kwargs: dict, reason: str, mention: str
) -> None:
    path = _write(tmp_path / "r.csv", header, **kwargs)
    for lenient in (False, True):
        with pytest.raises(EcgFileProblem) as caught:
            parse_signal_csv(path, lenient=lenient)
        problem = caught.value
        assert (problem.reason, mention in problem.detail) == (reason, True), problem.detail
        assert problem.detail.startswith("r.csv") and "\n" not in problem.detail
