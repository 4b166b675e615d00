"""The one-way layer rule (docs/architecture.md) on today's tree, and proof that it bites.

``make lint`` runs the same contracts with ``lint-imports``; these tests run them in-process on
grimp's graph so a deliberately added back-import can be shown to break them. They also hold the
two rules import-linter has no contract for: no cycle among ecgml *modules* (a package and its
own submodule included), and every function-level import of an ecgml module says why.
"""

from __future__ import annotations

import copy
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import grimp
import pytest
from importlinter import api
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

from experiments.module_graph import (
    REPO_ROOT,
    build_graph,
    function_level_imports,
    import_cycles,
)

CONTRACT_TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "independence": IndependenceContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}


@cache
def _configuration() -> dict:
    return api.read_configuration(str(REPO_ROOT / "pyproject.toml"))


@cache
def _graph() -> grimp.ImportGraph:
    return build_graph(REPO_ROOT)


def _contract_options(contract_id: str) -> dict:
    return next(c for c in _configuration()["contracts_options"] if c["id"] == contract_id)


def _is_kept(contract_id: str, graph: grimp.ImportGraph) -> bool:
    options = _contract_options(contract_id)
    contract = CONTRACT_TYPES[options["type"]](
        name=options["name"],
        session_options=_configuration()["session_options"],
        contract_options=options,
    )
    return contract.check(copy.deepcopy(graph), verbose=False).kept


def _graph_with(importer: str, imported: str) -> grimp.ImportGraph:
    graph = copy.deepcopy(_graph())
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="x")
    return graph


CONTRACT_IDS = [c["id"] for c in _configuration()["contracts_options"]]


@pytest.mark.parametrize("contract_id", CONTRACT_IDS)
def test_every_import_linter_contract_is_kept(contract_id: str) -> None:
    assert _is_kept(contract_id, _graph()), f"run `make lint` to see what breaks {contract_id}"


def test_layers_are_the_documented_stack() -> None:
    layers = [layer.strip("()") for layer in _contract_options("layers")["layers"]]
    assert layers[1:] == [
        "cli",
        "sweep | inference",
        "pipeline",
        "tasks",
        "modelfile",
        "tracking",
        "evaluation | explain",
        "models",
        "data",
        "digitize | synth | ingest",
        "recordstore",
        "beatstore",
        "packstore",
        "outputs",
        "signal | ecgfile",
        "trust | bounds",
        "errors | schemas",
    ]
    assert set(layers[0].split(" | ")) == {
        "train",
        "evaluate",
        "predict",
        "promote",
        "compare",
        "export",
        "serve",
        "relocate_store",
        "pack",
    }


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("ecgml.errors", "ecgml.cli"),  # the bottom layer importing the top one
        ("ecgml.data", "ecgml.models"),  # one step up
        ("ecgml.tracking", "ecgml.pipeline"),
        ("ecgml.inference", "ecgml.sweep"),  # independent siblings
        ("ecgml.ingest", "ecgml.digitize"),
        ("ecgml.ecgfile", "ecgml.ingest"),  # a reader knows nothing of pairing
        ("ecgml.ecgfile", "ecgml.signal"),
        ("ecgml.packstore", "ecgml.beatstore"),  # the samples know nothing of the index
    ],
)
def test_a_back_import_breaks_the_layers(importer: str, imported: str) -> None:
    graph = _graph()
    if importer not in graph.modules or imported not in graph.modules:
        pytest.skip(f"{importer} or {imported} not in the tree yet")
    assert not _is_kept("layers", _graph_with(importer, imported))


def test_evaluation_importing_a_stage_breaks_its_contract() -> None:
    assert not _is_kept("evaluation-standalone", _graph_with("ecgml.evaluation", "ecgml.data"))


def test_tracking_importing_a_stage_breaks_its_contract() -> None:
    assert not _is_kept("tracking-no-stage", _graph_with("ecgml.tracking", "ecgml.models"))


@pytest.mark.parametrize("imported", ["ecgml.pipeline", "ecgml.inference"])
def test_the_logged_model_importing_training_or_inference_breaks_its_contract(imported) -> None:
    assert not _is_kept("serving-light", _graph_with("ecgml.modelfile", imported))


def test_inference_importing_the_pipeline_breaks_its_contract() -> None:
    assert not _is_kept("inference-no-pipeline", _graph_with("ecgml.inference", "ecgml.pipeline"))


def test_no_import_cycles_among_modules() -> None:
    assert import_cycles(_graph()) == []


def test_a_cycle_is_found() -> None:
    graph = _graph_with("ecgml.errors", "ecgml.bounds")  # bounds imports errors, nothing else
    assert ["ecgml.bounds", "ecgml.errors"] in import_cycles(graph)


def _comment_lines(path: Path) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def test_function_level_imports_of_ecgml_say_why() -> None:
    """Allowed only to defer a heavy third-party import, with a comment on that line or above."""
    silent = []
    for found in function_level_imports(REPO_ROOT):
        comments = _comment_lines(REPO_ROOT / found.path)
        if not comments & {found.line - 1, found.line}:
            silent.append(f"{found.path}:{found.line} {found.function}() imports {found.module}")
    assert silent == [], "say why in a comment (e.g. `# deferred: captum is slow to import`)"


def test_docs_contracts_cite_tests_that_exist() -> None:
    """docs/contracts.md names the test of each contract as `file::test`: each one is real."""
    text = (REPO_ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    cited = sorted(set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)))
    assert len(cited) > 20
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not (REPO_ROOT / path).is_file()
        or not re.search(rf"^def {name}\(", (REPO_ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []
