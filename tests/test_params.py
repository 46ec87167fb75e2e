from __future__ import annotations

from pathlib import Path

import pytest

from mlimages.config.params import Params, ParamsError, find_profile, load_params, parse_override

PARAMS = Path(__file__).resolve().parent.parent / "params"
PROFILES = sorted(PARAMS.glob("*.yaml"))


def test_the_required_profiles_exist() -> None:
    names = {p.stem for p in PROFILES}
    assert {"smoke", "default", "paper"} <= names
    assert any(n.startswith("subset-") for n in names), "a real-subset template"


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_every_profile_validates_and_says_how_to_run_it(path: Path) -> None:
    params = load_params(path)
    assert params.profile == path.stem
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header).lower()
    assert path.read_text().startswith("#"), "a profile opens with a comment"
    for word in ("hardware", "wall time", "command", "expected outcome"):
        assert word in text, f"{path.name}: header comment should say the {word}"


def test_unknown_key_in_a_profile_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "params" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("synth:\n  num_trian: 10\n")
    with pytest.raises(ParamsError) as info:
        load_params(bad)
    assert "bad.yaml" in str(info.value)
    assert "'synth.num_trian': unknown key; expected one of: seed, num_train" in str(info.value)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("synthh:\n  num_train: 10\n")
    with pytest.raises(ParamsError, match=r"'synthh': unknown key; expected one of: profile, seed"):
        load_params(bad)


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth:\n  num_train: many\n")
    with pytest.raises(
        ParamsError, match=r"'synth.num_train': got 'many' \(str\); expected a valid integer"
    ):
        load_params(bad)


def test_out_of_range_value_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"'synth.label_noise'.*less than or equal to 1"):
        load_params("smoke", {"synth.label_noise": 2.0})


def test_overrides_are_typed_and_applied_last() -> None:
    params = load_params(
        "smoke", ["synth.num_train=123", "explore.close=false", "data.dictionary=null"]
    )
    assert params.synth.num_train == 123 and params.explore.close is False
    assert params.data.uses_miniature
    assert load_params("smoke").synth.num_train != 123  # the file is untouched


def test_mistyped_override_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"(?s)overrides .*'synth.num_trian': unknown key"):
        load_params("smoke", ["synth.num_trian=3"])
    with pytest.raises(ParamsError, match="expected the form section.key=value"):
        parse_override("synth.num_train")
    with pytest.raises(ParamsError, match="override 'seed.x': seed is not a section"):
        load_params("smoke", ["seed.x=1"])


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ParamsError, match=r"unknown profile 'smok'; expected one of: .*smoke"):
        find_profile("smok")


def test_run_dirs_follow_the_environment(runs: Path) -> None:
    params = load_params("smoke")
    assert params.stage_dir("explore") == runs / "smoke" / "explore"
    assert params.stage_dir("explore").is_dir()
    written = params.write(params.stage_dir("explore") / "params.yaml")
    assert load_params(written).synth == params.synth  # the saved file is itself a valid profile


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"data.val_list": "v.txt"}, "data.val_list is set but"),
        ({"download.imagenet_root": "/x"}, "download.imagenet_root is set"),
        ({"download.imagenet_val": "/x"}, "download.imagenet_val is set without"),
        ({"download.target_val_list": "v.txt"}, "target_val_list is set without"),
        ({"records.target_dictionary": "d.txt"}, "records.target_dictionary go together"),
        (
            {"pretrain.hold_out_novel": True, "synth.novel_classes": 0},
            "pretrain.hold_out_novel: true asks for the novel classes, but synth.novel_classes "
            "is 0; expected synth.novel_classes >= 1",
        ),
        (
            {"finetune.task": "novel", "synth.novel_classes": 0},
            "finetune.task: novel asks for the novel classes, but synth.novel_classes is 0",
        ),
        (
            {"finetune.task": "novel", "data.train_list": "t.txt", "data.dictionary": "d.txt"},
            "finetune.task: novel asks for the novel classes, but data.train_list or "
            "data.dictionary is set and only the miniature has novel classes",
        ),
        (
            {"pretrain.hold_out_novel": True, "data.train_list": "t.txt"},
            "pretrain.hold_out_novel: true asks .* expected the miniature",
        ),
    ],
)
def test_a_key_no_stage_would_read_is_refused(overrides: dict, named: str) -> None:
    with pytest.raises(ParamsError, match=f"(?s)invalid parameters.*{named}"):
        load_params("smoke", overrides)


def test_the_novel_task_and_k_are_off_by_default_and_name_their_splits() -> None:
    from mlimages.config import preflight

    defaults = Params(profile="x")
    assert defaults.synth.novel_classes == 0 and not defaults.pretrain.hold_out_novel
    assert defaults.finetune.task == "target" and defaults.finetune.examples_per_class is None
    assert defaults.finetune.splits == ("target_train", "target_val")
    novel = load_params("smoke", {"finetune.task": "novel", "pretrain.hold_out_novel": True})
    assert novel.finetune.splits == ("novel_train", "novel_val")
    assert preflight.check(novel).ok
    with pytest.raises(ParamsError, match="finetune.examples_per_class"):
        load_params("smoke", {"finetune.examples_per_class": 0})


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        ("sigmoid", "mask_thres", 0.5),
        ("weighted", "neg_select", 0.2),
        ("asl", "select_seed", 1),
        ("sigmoid", "counters", "replica"),
        ("sigmoid", "pos_weight", 12.0),
        ("asl", "pos_weight", 3.0),
        ("adaptive", "asl_clip", 0.1),
        ("weighted", "asl_gamma_neg", 2.0),
        ("sigmoid", "asl_gamma_pos", 1.0),
    ],
)
def test_a_loss_key_its_kind_ignores_is_refused(kind: str, key: str, value) -> None:
    """Set explicitly, even to its default: the run would report a value it never used."""
    named = f"key 'loss': loss.{key} is set but loss.kind is '{kind}'"
    with pytest.raises(ParamsError, match=f"(?s)invalid parameters.*{named}"):
        load_params("smoke", {"loss.kind": kind, f"loss.{key}": value})
    if kind == "adaptive":  # the default kind, not set: refused all the same
        with pytest.raises(ParamsError, match=named):
            load_params("smoke", {f"loss.{key}": value})


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss.kind": "adaptive", "loss.counters": "replica", "loss.mask_thres": 0.5},
        {"loss.kind": "sigmoid", "loss.weight_decay": 0.0},
        {"loss.kind": "weighted", "loss.pos_weight": 5.0},
        {"loss.kind": "asl", "loss.asl_gamma_neg": 2.0, "loss.asl_gamma_pos": 1.0},
        {"loss.kind": "asl", "loss.asl_clip": 0.0},
    ],
)
def test_a_loss_key_its_kind_reads_is_accepted_and_saved_profiles_reload(
    overrides: dict, runs: Path
) -> None:
    params = load_params("smoke", overrides)
    for key, value in overrides.items():
        assert getattr(params.loss, key.split(".")[1]) == value
    saved = params.write(params.stage_dir("pretrain") / "params.yaml")
    assert load_params(saved).loss == params.loss  # only the keys the kind reads are saved


def test_the_paper_loss_keeps_its_fingerprint_and_defaults() -> None:
    """The default is the paper's loss, and its runs' fingerprints predate the variants."""
    loss = load_params("default").loss
    assert (loss.kind, loss.counters) == ("adaptive", "global")
    assert loss.in_effect() == {
        "pos_weight": 12.0, "mask_thres": 0.7, "neg_select": 0.1, "select_seed": 1234,
        "weight_decay": 1e-4,
    }  # fmt: skip
    replica = load_params("default", {"loss.counters": "replica"}).loss.in_effect()
    assert replica["counters"] == "replica" and "kind" not in replica
    asl = load_params("default", {"loss.kind": "asl"}).loss.in_effect()
    assert set(asl) == {"kind", "asl_gamma_neg", "asl_gamma_pos", "asl_clip", "weight_decay"}
