"""A full disk, a read-only folder or a folder where a file should go: one line, exit 2, and no
temporary left behind — for ecgml.predict's JSON and ecgml.digitize's folder alike."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ecgml.errors import EcgmlError
from ecgml.outputs import write_text_atomic


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    out = tmp_path / "out" / "predictions.json"
    real_write = Path.write_text

    def write_half_then_fail(self: Path, text: str, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)  # what a full disk leaves
        no_space()

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    with pytest.raises(EcgmlError, match="no space left on device") as err:
        write_text_atomic(out, '{"a": 1}\n' * 100)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    monkeypatch.undo()
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_existing_folder_as_output_is_refused_before_any_work(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from ecgml.inference.score import run_predict

    signal = tmp_path / "signal.csv"
    signal.write_text("time_s,mv\n0,0\n")
    folder = tmp_path / "results"
    folder.mkdir()
    cfg = OmegaConf.create({"input": str(signal), "output": str(folder), "tracking_uri": None})
    with pytest.raises(EcgmlError, match="is a folder: pass a file path"):
        run_predict(cfg)  # refused before any model is looked up
    assert leftovers(tmp_path) == [] and list(folder.iterdir()) == []
    with pytest.raises(EcgmlError, match="is a folder"):
        write_text_atomic(folder, "{}")


def test_the_entry_point_turns_a_storage_error_into_one_line_exit_2(capsys) -> None:
    from omegaconf import OmegaConf

    from ecgml.cli import entry_point

    wrapped = entry_point(lambda cfg: no_space())
    with pytest.raises(SystemExit) as exit_:
        wrapped(OmegaConf.create({"traceback": False}))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0]
    other = entry_point(lambda cfg: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):  # not a storage error: a real failure keeps its traceback
        other(OmegaConf.create({"traceback": False}))


def test_digitize_on_a_full_disk_is_one_line_and_cleans_up(tmp_path, monkeypatch) -> None:
    import ecgml.digitize.folder as folder_module

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not read: the run is stubbed")
    out = tmp_path / "digitized"

    def write_some_then_fail(tmp: Path, *args, **kwargs):
        (tmp / "signals").mkdir()
        (tmp / "signals" / "a.csv").write_text("time_s,mv\n")
        no_space()

    monkeypatch.setattr(folder_module, "run_images", lambda *a, **k: [])
    monkeypatch.setattr(folder_module, "write_outputs", write_some_then_fail)
    with pytest.raises(EcgmlError, match="no space left on device") as err:
        folder_module.digitize_folder(images, out, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["images"]


@pytest.mark.parametrize("value", [-1, 3.5, {"a": 1}])
def test_disorders_that_are_not_names_are_one_line(value) -> None:
    """Found by make fuzz: ``disorders=-1`` raised a TypeError traceback."""
    from ecgml.inference.score import disorder_names

    with pytest.raises(EcgmlError, match="is not a list of disorder names"):
        disorder_names(value)
    assert disorder_names("hyponatremia") == ["hyponatremia"]
    assert disorder_names(None) == ["hyperkalemia", "hypokalemia", "hyponatremia"]
