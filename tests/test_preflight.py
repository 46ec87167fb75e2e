"""`mlimages params check`: every missing input named before a stage starts, without network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlimages.cli import main
from mlimages.config import layout, preflight
from mlimages.config.params import load_params
from mlimages.core import progress

TARGET_TASK = {
    "download.target_train_list",
    "download.target_val_list",
    "download.imagenet_train",
    "download.imagenet_val",
    "records.target_dictionary",
}


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["params", "check", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_the_miniature_profiles_have_every_input(profile: str, capsys) -> None:
    assert _check(capsys, "--params", profile) == (0, {"ok": True, "missing": []})


def test_paper_names_its_missing_target_task(capsys) -> None:
    code, result = _check(capsys, "--params", "paper")
    assert code == 1 and not result["ok"]
    keys = {m["key"] for m in result["missing"]}
    assert TARGET_TASK | {"data.train_list", "download.imagenet_root"} <= keys
    assert "data.dictionary" not in keys, "a URL is only checked for syntax (no network)"
    for missing in result["missing"]:
        assert missing["stage"] in layout.STAGES and "does not exist" in missing["why"]
    assert main(["params", "check", "--params", "paper"]) == 1
    text = capsys.readouterr().out
    assert "[records] records.target_dictionary:" in text and "data/imagenet" in text


def _real_profile(root: Path) -> Path:
    """A profile on real-data keys whose every input exists under `root`."""
    (root / "lists").mkdir()
    for name in ("dictionary.txt", "train.txt", "val.txt", "target.txt", "t_train.txt"):
        (root / "lists" / name).write_text("x\n")
    (root / "t_val.txt").write_text("x\n")
    for folder in ("imagenet", "imagenet_train", "imagenet_val", "files"):
        (root / folder).mkdir()
    profile = root / "params" / "real.yaml"
    profile.parent.mkdir()
    lines = [
        "data:",
        "  dictionary: lists/dictionary.txt",
        "  train_list: lists/train.txt",
        "  val_list: lists/val.txt",
        "download:",
        "  file_root: files",
        "  imagenet_root: imagenet",
        "  target_train_list: lists/t_train.txt",
        "  target_val_list: t_val.txt",
        "  imagenet_train: imagenet_train",
        "  imagenet_val: imagenet_val",
        "records:",
        "  target_dictionary: lists/target.txt",
    ]
    profile.write_text("\n".join(lines) + "\n")
    return profile


def test_a_complete_real_profile_is_ok_and_each_gap_is_named(tmp_path: Path) -> None:
    profile = _real_profile(tmp_path)
    assert preflight.check(load_params(profile)).ok
    (tmp_path / "lists" / "val.txt").unlink()
    (tmp_path / "imagenet_val").rmdir()
    missing = preflight.check(load_params(profile)).missing
    assert [(m.stage, m.key) for m in missing] == [
        ("download", "data.val_list"),
        ("download", "download.imagenet_val"),
    ]
    assert str(tmp_path / "lists" / "val.txt") in missing[0].why
    # Only the stages asked for: notebook 01 reads neither.
    assert preflight.check(load_params(profile), preflight.stages_of(["01_x.ipynb"])).ok


def test_urls_checked_for_syntax_only_and_lists_must_be_local(tmp_path: Path) -> None:
    profile = _real_profile(tmp_path)
    params = load_params(profile, ["data.dictionary=https://example.invalid/dictionary.txt"])
    assert preflight.check(params).ok  # never fetched
    params = load_params(
        profile, ["data.dictionary=https://", "data.train_list=https://example.org/train.txt"]
    )
    why = {m.key: m.why for m in preflight.check(params).missing}
    assert set(why) == {"data.dictionary", "data.train_list"}
    assert "not a valid http(s) URL" in why["data.dictionary"]
    assert "download it first" in why["data.train_list"]


def test_init_checkpoint_keras_file_tf1_prefix_or_folder(tmp_path: Path) -> None:
    def missing(value: str) -> list[str]:
        params = load_params("smoke", {"finetune.init_checkpoint": str(value)})
        return [m.key for m in preflight.check(params).missing]

    assert missing(tmp_path / "model.keras") == ["finetune.init_checkpoint"]
    (tmp_path / "model.keras").write_bytes(b"")
    assert missing(tmp_path / "model.keras") == []
    assert missing(tmp_path / "tf1" / "model.ckpt") == ["finetune.init_checkpoint"]
    (tmp_path / "tf1").mkdir()
    assert missing(tmp_path / "tf1") == ["finetune.init_checkpoint"]  # no `checkpoint` file
    (tmp_path / "tf1" / "model.ckpt.index").write_bytes(b"")
    assert missing(tmp_path / "tf1" / "model.ckpt") == []
    (tmp_path / "tf1" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    assert missing(tmp_path / "tf1") == []


def test_a_study_on_paper_stops_before_any_notebook(runs: Path, capsys) -> None:
    assert main(["study", "--params", "paper"]) == 2
    err = capsys.readouterr().err
    for key in TARGET_TASK | {"data.train_list"}:
        assert key in err
    assert not list(runs.rglob("*.ipynb")), "no notebook may start"
    # Exploring the lists (notebook 01) needs only the lists: still named, nothing else.
    assert main(["study", "--params", "paper", "--only", "01"]) == 2
    err = capsys.readouterr().err
    assert "data.train_list" in err and "target_train_list" not in err
    assert not list(runs.rglob("*.ipynb"))


def test_progress_bars_by_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit wins; a notebook open in JupyterLab shows bars, a headless kernel does not."""
    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.delenv(progress.HEADLESS_ENV, raising=False)
    assert not progress.quiet(None) and progress.quiet(False)
    assert type(progress.tqdm(total=1, disable=True)).__module__ == "tqdm.notebook"
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    assert progress.quiet(None) and not progress.quiet(True)
    bar = progress.tqdm(total=1, disable=True)
    assert type(bar).__module__ == "tqdm.std"
    monkeypatch.setattr(progress, "in_kernel", lambda: False)
    assert type(progress.tqdm(total=1, disable=True)).__module__ == "tqdm.std"
