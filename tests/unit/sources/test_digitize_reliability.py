"""ecgml.digitize on hostile or unlucky input (issue 17: #1, #3, #14, #16).

Every test here failed on the code before the fix; none allocates more than a few MB (bomb
decoders and renderers are replaced by tripwires, so a regression fails instead of swapping).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from ecgml.digitize import image as image_module
from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.folder import digitize_folder, run_images
from ecgml.digitize.image import load_image
from ecgml.digitize.pipeline import ImageResult, process_image
from ecgml.errors import EcgmlError
from tests.interrupt import ctrl_c_once_started

MARKER = ".ecgml-output.json"
REPO = Path(__file__).resolve().parents[3]
BOMB_SIDE = 30_000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A few-hundred-byte PNG whose header claims ``side``×``side`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (side + 1) * 4, 9)  # 4 rows; a decoder allocates them all
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def write_jpeg_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A real 16×16 JPEG whose SOF0 header is patched to claim ``side``×``side`` pixels."""
    ok, data = cv2.imencode(".jpg", np.full((16, 16, 3), 200, np.uint8))
    assert ok
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(raw))


def write_pdf_bomb(path: Path, inches: float = 200.0) -> None:
    """A ~300-byte PDF with one blank ``inches``-square page."""
    side = int(inches * 72)
    path.write_bytes(
        (
            "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            f"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 {side} {side}]>>endobj\n"
            "trailer<</Root 1 0 R>>\n%%EOF\n"
        ).encode()
    )


def _tripwire(*_: object, **__: object) -> None:
    raise AssertionError("a decompression bomb reached the decoder")


def blank_images(folder: Path, names: tuple[str, ...] = ("a.png", "b.png")) -> Path:
    """Tiny images that load but hold no ECG (each fails fast as ``failed``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.full((40, 60, 3), 245, np.uint8))
    return folder


def run_digitize(inputs: Path, out: Path, **kwargs: object) -> None:
    """digitize_folder on images that all fail: it writes its output, then raises."""
    with pytest.raises(EcgmlError, match="no image could be digitized"):
        digitize_folder(inputs, out, n_jobs=1, progress=False, **kwargs)


# --------------------------------------------------------------------------- #1 own input


@pytest.mark.parametrize("where", ["same", "parent", "inside", "symlink"])
def test_output_that_overlaps_the_input_is_refused(tmp_path: Path, where: str) -> None:
    inputs = blank_images(tmp_path / "scans" / "in")
    (tmp_path / "scans" / "notes.txt").write_text("keep me")
    out = {
        "same": inputs,
        "parent": tmp_path / "scans",
        "inside": inputs / "out",
        "symlink": tmp_path / "link",
    }[where]
    if where == "symlink":
        out.symlink_to(inputs, target_is_directory=True)
    with pytest.raises(EcgmlError, match="input_dir") as err:
        digitize_folder(inputs, out, overwrite=True, n_jobs=1, progress=False)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in inputs.iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "scans" / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_only_a_folder_ecgml_wrote(tmp_path: Path) -> None:
    inputs = blank_images(tmp_path / "in")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    with pytest.raises(EcgmlError, match="did not write") as err:
        digitize_folder(inputs, mine, overwrite=True, n_jobs=1, progress=False)
    assert "\n" not in str(err.value)
    assert (mine / "thesis.docx").read_text() == "years of work"

    out = tmp_path / "out"
    run_digitize(inputs, out)
    assert json.loads((out / MARKER).read_text())["created_by"] == "ecgml.digitize"
    (out / "stale.txt").write_text("from before")
    run_digitize(inputs, out, overwrite=True)  # its own output: replaced
    assert (out / "report.csv").is_file() and not (out / "stale.txt").exists()
    assert (out / MARKER).is_file()


# --------------------------------------------------------------------------- #3 bombs


@pytest.mark.parametrize("writer", [write_png_bomb, write_jpeg_bomb])
def test_image_bombs_are_refused_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: object
) -> None:
    path = tmp_path / ("bomb.png" if writer is write_png_bomb else "bomb.jpg")
    writer(path)  # type: ignore[operator]
    assert path.stat().st_size < 5000
    monkeypatch.setattr(image_module.cv2, "imdecode", _tripwire)
    with pytest.raises(DigitizeError, match=r"30000×30000.*cap") as err:
        load_image(path)
    assert "max_image_pixels" in str(err.value) and "\n" not in str(err.value)
    result = process_image(path)
    assert result.status == "failed" and "30000×30000" in result.error


def test_pixel_cap_is_configurable(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "small.png"), np.full((40, 60, 3), 245, np.uint8))
    assert load_image(tmp_path / "small.png", max_pixels=2400).shape == (40, 60, 3)
    with pytest.raises(DigitizeError, match="60×40"):
        load_image(tmp_path / "small.png", max_pixels=2399)


def test_device_files_and_unknown_formats_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(DigitizeError, match="not a regular file"):
        load_image(tmp_path / "zero.png")
    _, bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "bmp.png").write_bytes(bmp.tobytes())
    with pytest.raises(DigitizeError, match="not a readable image"):
        load_image(tmp_path / "bmp.png")


def test_pdf_with_a_giant_page_is_refused_before_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdfium = pytest.importorskip("pypdfium2")
    write_pdf_bomb(tmp_path / "bomb.pdf")
    monkeypatch.setattr(pdfium.PdfPage, "render", _tripwire)
    result = process_image(tmp_path / "bomb.pdf")
    assert result.status == "failed"
    assert "cap" in result.error and "200.0×200.0 in" in result.error, result.error


def _die_on_boom(job: tuple[Path, str], **_: object) -> ImageResult:
    path = Path(job[0])
    if path.stem == "boom":
        os._exit(1)  # what the kernel's OOM killer does to a worker, minus the wait
    return ImageResult(path.name, "failed", "processed")


def test_a_worker_death_fails_that_image_and_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ecgml.digitize.folder as folder

    monkeypatch.setattr(folder, "_process_job", _die_on_boom)
    names = ["a.png", "b.png", "boom.png", "c.png", "d.png", "e.png"]
    jobs = [(Path(n), "strip") for n in names]
    results = run_images(jobs, 500.0, None, {}, n_jobs=2, progress=False)
    assert [r.image_file for r in results] == names
    by_name = {r.image_file: r for r in results}
    assert by_name["boom.png"].status == "failed"
    assert "worker process died" in by_name["boom.png"].error
    assert all(by_name[n].error == "processed" for n in names if n != "boom.png")


# --------------------------------------------------------------------------- #14 leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_temp(parent: Path, name: str, pid: int | None) -> Path:
    folder = parent / name
    (folder / "signals").mkdir(parents=True)
    (folder / "signals" / "x.csv").write_text("time_s,mv\n")
    if pid is not None:
        marker = {"created_by": "ecgml.digitize", "pid": pid, "host": os.uname().nodename}
        (folder / MARKER).write_text(json.dumps(marker))
    return folder


def test_stale_temp_folders_of_an_interrupted_run_are_removed(tmp_path: Path) -> None:
    inputs = blank_images(tmp_path / "in")
    stale = _fake_temp(tmp_path, ".out.tmp-0badc0de", _dead_pid())
    trash = _fake_temp(tmp_path, ".out.old-0badf00d", _dead_pid())
    live = _fake_temp(tmp_path, ".out.tmp-1234abcd", os.getpid())  # a run still going
    foreign = _fake_temp(tmp_path, ".out.tmp-deadbeef", None)  # no marker: not ecgml's
    other = _fake_temp(tmp_path, ".other.tmp-0badc0de", _dead_pid())  # another output's
    run_digitize(inputs, tmp_path / "out")
    assert not stale.exists() and not trash.exists()
    assert live.exists() and foreign.exists() and other.exists()


PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import ecgml.digitize.folder as folder

    def slow_job(job, **_):
        Path(sys.argv[1], f"{os.getpid()}.pid").write_text("")
        time.sleep(60)

    folder._process_job = slow_job
    folder.run_images([(Path("a.png"), "strip"), (Path("b.png"), "strip")], 500.0, None, {},
                      n_jobs=2, progress=False)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}/stat").is_file() and ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    )


def _wait_for(predicate: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method and /proc")
def test_pool_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)], cwd=REPO, start_new_session=True
    )
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 60), "workers never ran"
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        parent.kill()
        parent.wait(10)
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 5), "orphans still run"
    finally:
        parent.kill()
        for pid_file in tmp_path.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.stem), signal.SIGKILL)


# --------------------------------------------------------------------------- #16 Ctrl-C


CLI_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import ecgml.digitize.folder as folder
    from ecgml.cli.digitize import main

    flag = Path(sys.argv[1])

    def slow_job(job, **_):
        flag.write_text("started")
        time.sleep(60)

    folder._process_job = slow_job
    sys.argv = ["digitize", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="process groups and fork")
def test_ctrl_c_is_one_line_exit_130_and_leaves_no_output(tmp_path: Path) -> None:
    inputs = blank_images(tmp_path / "in")
    flag = tmp_path / "started"
    args = [f"input_dir={inputs}", f"output_dir={tmp_path / 'out'}", "n_jobs=2", "progress=false"]
    returncode, stderr = ctrl_c_once_started(
        CLI_SCRIPT, flag, [*args, f"hydra.run.dir={tmp_path / 'h'}"], "digitize"
    )
    assert returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
