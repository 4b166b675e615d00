"""The links ecgml prints open MLflow's model-training view, checked in a real browser.

`make ui` (MLflow's UI) runs on a free port of 127.0.0.1 over a store holding a finished ecgml
run; headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium) opens, in
a fresh profile, the experiment's runs table, the run page the train summary links and the
run's artifacts. Screenshots stay in the test's temporary folder. Without Chromium (no apt, no
root) the tests skip, saying why; `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from ecgml.pipeline.run import run_one
from ecgml.tracking.runs import UI_URL_ENV, run_page_url

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60.0

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium chromium-driver; "
        ".ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, toy_store: Path) -> dict[str, str]:
    """A fast ecgml run (fast dev run on the toy store) in its own sqlite store."""
    from tests.conftest import compose_once

    folder = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cfg = compose_once(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "debug=fdr",
        f"logger.tracking_uri={uri}",
        f"paths.cache_dir={folder / 'cache'}",
        f"hydra.run.dir={folder / 'out'}",
    )
    result = run_one(cfg)
    name = MlflowClient(uri).get_run(result.run_id).info.run_name
    return {
        "uri": uri,
        "artifacts": str(folder / "artifacts"),
        "experiment_id": result.experiment_id,
        "run_id": result.run_id,
        "run_name": str(name),
    }


@pytest.fixture(scope="module")
def ui(finished_run: dict[str, str]) -> Iterator[str]:
    """MLflow's UI over that store, on a free port of 127.0.0.1 (what `make ui` starts)."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        finished_run["uri"],
        "--default-artifact-root",
        finished_run["artifacts"],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, server)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def wait_for_health(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow ui exited: {server.stderr.read()[-2000:]!r}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"mlflow ui did not answer on {base} in {WAIT_S:.0f} s")


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium with a fresh profile (no stored MLflow view choice)."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="ecgml-chromium-", dir=tmp_path)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_showing(driver: object, url: str, texts: tuple[str, ...], shot: Path) -> str:
    """Open ``url`` and wait until the rendered page holds every one of ``texts``; keeps a
    screenshot at ``shot``; returns the page's HTML."""
    driver.get(url)  # type: ignore[attr-defined]
    deadline = time.monotonic() + WAIT_S
    html = ""
    while time.monotonic() < deadline:
        html = driver.page_source  # type: ignore[attr-defined]
        if all(text in html for text in texts):
            break
        time.sleep(0.5)
    driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    missing = [text for text in texts if text not in html]
    assert not missing, f"{url} never showed {missing} (screenshot: {shot})"
    return html


@pytest.fixture()
def printed_link(ui: str, finished_run: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The run-page link the train summary prints, with ``ECGML_UI_URL`` at this UI."""
    monkeypatch.setenv(UI_URL_ENV, ui)
    return run_page_url(finished_run["experiment_id"], finished_run["run_id"])


def test_the_printed_run_page_link_opens_the_runs_metrics(
    ui: str, printed_link: str, finished_run: dict[str, str], browser: object, tmp_path: Path
) -> None:
    url = printed_link
    assert url.startswith(ui) and "workflowType=machine_learning" in url
    html = page_showing(
        browser, url, (finished_run["run_name"], "test/auroc"), tmp_path / "run.png"
    )
    # the model-training view the link asked for: a fresh profile would otherwise get the GenAI
    # view, whose navigation lists evaluations (checked: without the parameter it does)
    assert "Evaluation" not in html


def test_the_experiment_link_shows_the_runs_table(
    ui: str, finished_run: dict[str, str], browser: object, tmp_path: Path
) -> None:
    url = f"{ui}/#/experiments/{finished_run['experiment_id']}?workflowType=machine_learning"
    html = page_showing(browser, url, (finished_run["run_name"],), tmp_path / "runs.png")
    assert "Evaluation" not in html  # without the parameter: traces and evaluations, no runs


def test_the_runs_artifacts_are_listed_and_render(
    printed_link: str, browser: object, tmp_path: Path
) -> None:
    url = printed_link.replace("?", "/artifacts?", 1)
    page_showing(
        browser,
        url,
        ("results.md", "predictions.csv", "model_card.md"),
        tmp_path / "artifacts.png",
    )


def test_the_validation_report_renders_in_the_artifact_view(
    printed_link: str, browser: object, tmp_path: Path
) -> None:
    """MLflow shows the HTML report in its artifact view (a frame): the items, and the
    embedded figures decoded by the browser."""
    from selenium.webdriver.common.by import By

    url = printed_link.replace("?", "/artifacts/validation_report.html?", 1)
    page_showing(browser, url, ("validation_report.html", "<iframe"), tmp_path / "report.png")
    driver: Any = browser
    deadline = time.monotonic() + WAIT_S
    text, widths = "", []
    while time.monotonic() < deadline and not (widths and "Model performance" in text):
        driver.switch_to.default_content()
        for frame in driver.find_elements(By.TAG_NAME, "iframe"):
            driver.switch_to.frame(frame)
            text = driver.find_element(By.TAG_NAME, "body").text
            if "Validation report (TRIPOD+AI)" in text:
                widths = [
                    driver.execute_script("return arguments[0].naturalWidth", image)
                    for image in driver.find_elements(By.TAG_NAME, "img")
                ]
                break
            driver.switch_to.default_content()
        time.sleep(0.5)
    driver.switch_to.default_content()
    assert "Validation report (TRIPOD+AI)" in text and "Model performance" in text
    assert widths and all(w > 100 for w in widths), widths  # every figure decoded
