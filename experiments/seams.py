"""How forked is the top third of ecgml? Four counts over ``ecgml/``, by reading its syntax tree.

- **branch sites**: lines holding an ``if`` / ``match`` / comparison / ``in`` test whose operand
  is a task or unit name literal (``"binary"``, ``"record"``, …), a task's ``is_binary`` /
  ``is_regression`` / ``name`` / ``kind``, a ``unit`` attribute (``data.unit``, ``spec.unit``)
  or ``record_unit(…)``;
- **twins**: pairs of functions or classes that do one job twice, once per task kind or unit
  (:data:`TWINS`); a pair counts while both halves are defined, unless both are classes
  deriving from one ``ecgml`` base class: then the shared job is written once, in the base,
  and each half holds only its unit's own part (a seam, like the task and unit objects);
- **run openers**: modules outside ``ecgml/tracking`` that call ``create_run``, ``tracked_run``
  or ``MLFlowLogger(``;
- **artifact loggers**: modules that call ``log_artifact*``, ``log_text``, ``log_dict`` or
  ``log_table``, outside the one logging module (:data:`LOGGING_MODULE`).

``python experiments/seams.py`` prints the four counts and where they come from;
``--json`` prints them as JSON. ``tests/unit/test_seams.py`` fails when a count rises above
:data:`RATCHET` (lower the ratchet as a refactor lowers a count, never raise it).
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ecgml"
#: Task and unit names whose literal in a test is a branch on the task or the unit.
NAMES = frozenset(
    {
        "binary",
        "multilabel",
        "potassium",
        "sodium",
        "pretrain",
        "regression",
        "beat",
        "beats",
        "record",
        "records",
        "strip",
    }
)
#: Attributes that name the task kind or the unit wherever they are read.
UNIT_ATTRS = frozenset({"unit", "is_binary", "is_regression"})
#: Attributes that name the task only on a task object (``task.name``, ``spec.kind``).
TASK_ATTRS = frozenset({"name", "kind"})
#: Comparisons with these words in an operand are about something else (layouts, columns).
NOT_A_SEAM = ("layout", "columns")
#: Functions whose call is a unit test in disguise.
BRANCH_CALLS = frozenset({"record_unit"})
#: The one module that logs run artifacts (and reads them back).
LOGGING_MODULE = "ecgml/tracking/artifacts.py"
#: Functions (or classes) that do one job twice: per task kind (binary vs multi-label/serum)
#: and per unit (beat vs record). ``Class.method`` names a method.
TWINS: tuple[tuple[str, str], ...] = (
    # binary vs task (multi-label, serum)
    ("_lifecycle", "_task_lifecycle"),
    ("log_model", "log_task_model"),
    ("model_spec", "task_model_spec"),
    ("scorer_of", "task_scorer_of"),
    ("read_model_dir", "read_task_dir"),
    ("read_model_files", "read_task_files"),
    ("reevaluate", "reevaluate_task"),
    ("evaluate_with_config", "evaluate_task"),
    ("load_models", "load_task_outputs"),
    ("run_description", "task_description"),
    ("format_summary", "task_lines"),
    ("load_ref", "find_task_ref"),
    # beat vs record
    ("BeatTable", "RecordTable"),
    ("BeatDataModule", "RecordDataModule"),
    ("LightningFitter.fit", "fit_record_model"),
    ("build_model", "build_record_model"),
    ("run_one", "run_records"),
    ("log_model", "log_record_model"),
    ("cross_validate", "record_fold"),
    ("score_entries", "score_records"),
    ("score_entries", "score_strips"),
)
#: Counts may only go down: ``tests/unit/test_seams.py`` fails above these.
RATCHET = {"branch_sites": 4, "twins": 0, "run_openers": 0, "artifact_loggers": 0}
#: Where the architecture should end up.
TARGETS = {"branch_sites": 6, "twins": 0, "run_openers": 1, "artifact_loggers": 1}


@dataclass
class Seams:
    branch_sites: list[str] = field(default_factory=list)
    twins: list[str] = field(default_factory=list)
    run_openers: list[str] = field(default_factory=list)
    artifact_loggers: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


def _source(node: ast.AST) -> str:
    return ast.unparse(node).lower()


def _is_branch_operand(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_branch_operand(e) for e in node.elts)
    if isinstance(node, ast.Attribute):
        if node.attr in UNIT_ATTRS:
            return True
        return node.attr in TASK_ATTRS and "task" in _source(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in BRANCH_CALLS
    if isinstance(node, ast.UnaryOp):
        return _is_branch_operand(node.operand)
    return False


def _tests(tree: ast.AST) -> list[ast.AST]:
    """Every expression that decides a branch: comparisons anywhere, bare tests of ifs."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            # a drawing layout ("strip") or a column name ("beat") is neither a task nor a unit
            if not any(word in _source(o) for o in operands for word in NOT_A_SEAM):
                found += operands
        elif isinstance(node, ast.If | ast.IfExp | ast.While | ast.Assert):
            found.append(node.test)
        elif isinstance(node, ast.BoolOp):
            found += node.values
        elif isinstance(node, ast.Match):
            found.append(node.subject)
    return found


def branch_sites(path: Path, tree: ast.AST, root: Path = ROOT) -> set[str]:
    rel = path.relative_to(root.parent)
    return {
        f"{rel}:{node.lineno}"
        for node in _tests(tree)
        if hasattr(node, "lineno") and _is_branch_operand(node)
    }


def defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            names |= {
                f"{node.name}.{f.name}"
                for f in node.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
    return names


def class_bases(tree: ast.AST) -> dict[str, set[str]]:
    """Each class's direct bases, by name (``L.LightningDataModule`` → ``LightningDataModule``)."""
    return {
        node.name: {
            b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases
        }
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }


def share_a_base(a: str, b: str, bases: dict[str, set[str]]) -> bool:
    """``a`` and ``b`` are classes deriving from one base class defined in ``ecgml``."""
    common = bases.get(a, set()) & bases.get(b, set())
    return any(base in bases for base in common)


def called_names(tree: ast.AST) -> Counter[str]:
    calls: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            calls[name] += 1
    return calls


def measure(root: Path = ROOT) -> Seams:
    seams = Seams()
    defined: set[str] = set()
    bases: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = str(path.relative_to(root.parent))
        seams.branch_sites += sorted(branch_sites(path, tree, root))
        defined |= defined_names(tree)
        bases |= class_bases(tree)
        calls = called_names(tree)
        if not rel.startswith("ecgml/tracking/") and (
            calls["create_run"] or calls["tracked_run"] or calls["MLFlowLogger"]
        ):
            seams.run_openers.append(rel)
        logs = sum(n for name, n in calls.items() if name.startswith("log_artifact")) + sum(
            calls[name] for name in ("log_text", "log_dict", "log_table")
        )
        if logs and rel != LOGGING_MODULE:
            seams.artifact_loggers.append(rel)
    seams.twins = [
        f"{a} / {b}"
        for a, b in TWINS
        if a in defined and b in defined and not share_a_base(a, b, bases)
    ]
    return seams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--list", action="store_true", help="list every site counted")
    args = parser.parse_args()
    seams = measure()
    counts = seams.counts()
    if args.json:
        print(json.dumps(counts))
        return
    for key, n in counts.items():
        print(f"{key:17s} {n:4d}   target {TARGETS[key]:3d}   ratchet {RATCHET[key]:3d}")
    by_module = Counter(site.rsplit(":", 1)[0] for site in seams.branch_sites)
    modules = ", ".join(f"{m.removeprefix('ecgml/')} {n}" for m, n in by_module.most_common())
    print(f"branch sites in {len(by_module)} modules: {modules}")
    if args.list:
        for key, items in vars(seams).items():
            print(f"\n{key}:")
            print("\n".join(f"  {item}" for item in items))


if __name__ == "__main__":
    main()
