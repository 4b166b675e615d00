"""The seams ratchet: the counts of experiments/seams.py (task/unit branch sites, twin
functions, modules that open runs or log artifacts) may fall, never rise."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from ecgml import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "experiments" / "seams.py"


def load_seams():
    spec = importlib.util.spec_from_file_location("seams", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["seams"] = module
    spec.loader.exec_module(module)
    return module


def test_no_count_rises_above_its_ratchet() -> None:
    seams = load_seams()
    counts = seams.measure().counts()
    over = {k: (n, seams.RATCHET[k]) for k, n in counts.items() if n > seams.RATCHET[k]}
    assert not over, f"new task/unit forks (count, ratchet): {over}; use the seams instead"


def test_the_counter_sees_each_kind_of_seam(tmp_path: Path) -> None:
    seams = load_seams()
    source = tmp_path / "ecgml" / "m.py"
    source.parent.mkdir()
    source.write_text(
        "def f(task, cfg, layout, frame):\n"
        "    if task.is_binary:\n"  # counted
        "        pass\n"
        "    if cfg.data.unit == 'record':\n"  # counted
        "        pass\n"
        "    if layout != 'strip':\n"  # a drawing layout: not counted
        "        pass\n"
        "    if 'beat' not in frame.columns:\n"  # a column: not counted
        "        pass\n"
        "    return task.name in ('binary', 'pretrain')\n"  # counted
        "def g(client):\n"
        "    client.log_artifact('x')\n"
        "    client.create_run('e')\n"
    )
    counted = seams.branch_sites(source, ast.parse(source.read_text()), source.parent)
    assert {int(site.rsplit(":", 1)[1]) for site in counted} == {2, 4, 10}
    measured = seams.measure(source.parent)
    assert measured.artifact_loggers == ["ecgml/m.py"] == measured.run_openers


def test_a_twin_pair_counts_until_its_shared_job_lives_in_one_base(tmp_path: Path) -> None:
    seams = load_seams()
    source = tmp_path / "ecgml" / "m.py"
    source.parent.mkdir()
    twins = "class BeatTable:\n    pass\nclass RecordTable:\n    pass\n"
    source.write_text(twins)
    assert seams.measure(source.parent).twins == ["BeatTable / RecordTable"]
    outside = "import pandas as pd\nclass BeatTable(pd.DataFrame):\n    pass\n"
    source.write_text(outside + "class RecordTable(pd.DataFrame):\n    pass\n")
    assert seams.measure(source.parent).twins == ["BeatTable / RecordTable"]  # not ecgml's
    seam = "class ExampleTable:\n    pass\nclass BeatTable(ExampleTable):\n    pass\n"
    source.write_text(seam + "class RecordTable(ExampleTable):\n    pass\n")
    assert seams.measure(source.parent).twins == []
