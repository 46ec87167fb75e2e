"""The planner: FLOPs counted analytically, the paper's run replayed, storage against a real
download of the miniature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlimages import cli
from mlimages.config.params import load_params
from mlimages.paper import facts
from mlimages.train import plan


def test_flops_match_published_counts() -> None:
    """He et al. (2016), Table 1: 3.8 / 7.6 / 11.3 GMACs (v1 layout); torchvision's v1.5 4.09."""
    gmacs = {
        (depth, layout): plan.resnet_flops(facts.DEPTHS[depth], 64, 224, 1000, layout) / 2e9
        for depth in (50, 101, 152)
        for layout in ("v1", "v1.5")
    }
    for depth, published in ((50, 3.8), (101, 7.6), (152, 11.3)):
        assert gmacs[(depth, "v1")] == pytest.approx(published, rel=0.02)
    assert gmacs[(50, "v1.5")] == pytest.approx(4.09, abs=0.005)
    ours = plan.resnet_flops(facts.DEPTHS[101], 64, 224, 1000) / 2e9
    # No max-pool: stage 0's first 1x1 conv runs at 112 px (4x its v1.5 cost), nothing else.
    assert ours - gmacs[(101, "v1.5")] == pytest.approx(64 * 64 * (112**2 - 56**2) / 1e9)


def test_flops_match_the_keras_model_on_a_small_case() -> None:
    import keras

    from mlimages.paper.model import build_resnet

    blocks, width, size, classes = (1, 2, 1, 1), 8, 40, 10
    model = build_resnet(classes, blocks=blocks, width=width, image_size=size)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            macs += h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    assert plan.resnet_flops(blocks, width, size, classes) == 2 * macs


def test_the_papers_run_is_reproduced_within_its_stated_assumptions() -> None:
    run = plan.paper_run(price_per_gpu_hour=1.0)
    assert run.images_seen == 17_609_752 * 60
    assert run.images_per_s_per_gpu == pytest.approx(1_056_585_120 / (128 * 90 * 3600))
    assert run.wall_hours == pytest.approx(90.0)
    assert run.gpu_hours == pytest.approx(128 * 90)
    assert run.cost == pytest.approx(11_520)
    assert run.disk_gb == pytest.approx(17_609_752 * 2e6 / 1e9)  # originals, ~2 MB each
    text = "\n".join(plan.paper_arithmetic())
    assert "1,056,585,120" in text and "90.0 h wall" in text and "11,520 GPU-hours" in text
    assert "257,955" in text  # steps at a global batch of 4,096


def test_plan_arithmetic() -> None:
    p = plan.plan(
        1_000_000, 10, depth=50, gpus=8, images_per_s=500, scaling=0.8, bytes_per_image=40_000,
        bytes_per_original=1e6, download_mbit_per_s=100, price_per_gpu_hour=3.0,
    )  # fmt: skip
    assert p.wall_hours == pytest.approx(1e7 / (500 * 8 * 0.8) / 3600)
    assert p.gpu_hours == pytest.approx(p.wall_hours * 8)
    assert p.cost == pytest.approx(p.gpu_hours * 3.0)
    assert p.disk_gb == pytest.approx(40.0)
    assert p.download_hours == pytest.approx(1e6 * 1e6 * 8 / 100e6 / 3600)
    assert p.model == "ResNet-50"


def test_gpu_table_rates_carry_over_by_flops() -> None:
    a100 = plan.GPUS["A100-80GB"]
    assert a100.measured and "DeepLearningExamples" in a100.source
    r50 = plan.gpu_rate("A100-80GB", facts.DEPTHS[50], 64, 224, 1000)
    assert r50 == pytest.approx(a100.images_per_s * 4.09 / 4.089, rel=0.01)  # v1.5 vs ours
    r101 = plan.gpu_rate("A100-80GB", facts.DEPTHS[101], 64, 224, 11166)
    assert r101 < r50 / 1.8
    assert all(g.source and 0 < g.scaling_8 <= 1 for g in plan.GPUS.values())
    eight = plan.plan(1000, 1, gpus=8)
    assert eight.scaling == a100.scaling_8
    assert not plan.GPUS["H200"].measured and "estimate" in plan.GPUS["H200"].source


def test_bad_inputs_name_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plan.gpu.*A100-80GB"):
        plan.plan(10, 1, gpu="TPU")
    with pytest.raises(ValueError, match="depth 34"):
        plan.plan(10, 1, depth=34)
    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="metrics.json.*total"):
        plan.measured_bytes(bad)


@pytest.mark.parametrize("profile", ["smoke", "default", "paper", "subset-openimages-100k"])
def test_every_profile_can_be_planned(profile: str, runs: Path) -> None:
    params = load_params(profile)
    p = plan.profile_plan(params)
    assert p.images == plan.profile_images(params) > 0
    assert p.epochs == pytest.approx(
        params.pretrain.steps * params.pretrain.global_batch / p.images
    )
    assert p.wall_hours > 0 and p.disk_gb > 0


def test_storage_estimate_against_a_real_download_of_the_miniature(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["download", "--params", "smoke", "--json"]) == 0
    capsys.readouterr()
    stage = runs / "smoke" / "download"
    metrics = json.loads((stage / "metrics.json").read_text())

    def on_disk(split: str) -> int:
        return sum(f.stat().st_size for f in (stage / split / "images").rglob("*") if f.is_file())

    # Planned with what the downloader measured, the disk estimate is the bytes on disk.
    measured = plan.measured_bytes(stage / "metrics.json")
    total = plan.plan(metrics["total"]["ok"], 1, bytes_per_image=measured.stored_per_image)
    actual = sum(on_disk(s) for s in metrics["splits"])
    assert total.disk_gb * 1e9 == pytest.approx(actual, rel=0.001)
    # Measured on the training split, it predicts the validation split it has not seen.
    train = plan.measured_bytes(stage / "metrics.json", split="train")
    val = plan.plan(metrics["splits"]["val"]["ok"], 1, bytes_per_image=train.stored_per_image)
    assert val.disk_gb * 1e9 == pytest.approx(on_disk("val"), rel=0.1)
    # The profile's plan picks the measurement up (same max_side).
    params = load_params("smoke")
    assert plan.profile_plan(params).bytes_per_stored_image == pytest.approx(
        measured.stored_per_image
    )


def test_cli_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--paper", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["wall_hours"] == pytest.approx(90.0)
    assert cli.main(["plan", "--images", "1000", "--epochs", "2", "--gpu", "V100-16GB",
                     "--gpus", "8", "--price", "1.5", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["gpus"] == 8 and out["images_seen"] == 2000 and out["cost"] > 0
    assert cli.main(["plan", "--images", "10", "--epochs", "1", "--gpu", "nope"]) == 2
