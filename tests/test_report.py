"""Paper vs ours: the comparison built from fixture results, the deviations, publishing, and
tables that a rerun on the same inputs writes byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlimages import cli, report
from mlimages.params import Params, load_params

TOP1 = {(1, 0): 40.0, (1, 1): 42.0, (2, 0): 45.0, (2, 1): 46.0}


def write_results(params: Params, ckpts=(1, 2, 3, 4, 5)) -> None:
    """Fine-tuning results under the contract of notebook 05, two seeds, both sizes."""
    f = params.finetune
    for ckpt in ckpts:
        rows = [
            {
                "ckpt": ckpt,
                "setting": f"setting {ckpt}",
                "seed": seed,
                "model": "resnet_1_1_1_1_w8",
                "img_size": size,
                "top1": TOP1.get((ckpt, seed), 30.0 + ckpt) + (size == f.large_size),
                "top5": 70.0 + seed,
                "param_count": 0.1308,
                "train_sizes": str(f.base_size),
                "steps": f.steps,
            }  # fmt: skip
            for seed in (0, 1)
            for size in (f.base_size, f.large_size)
        ]
        out = params.run_dir / "finetune" / f"ckpt{ckpt}"
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)


def write_stage_metrics(params: Params) -> None:
    """What notebooks 01, 02 and 06 leave behind, in their formats."""
    run = params.run_dir
    for stage, payload in {
        "explore": {
            "measured": {"train_images": 300, "labels_per_image_mean": 17.0, "classes": 64,
                         "max_depth": 9, "mean_depth": 6.25, "images_per_class_mean": 100.0},
            "hierarchy": {"classes": 64},
        },
        "download": {
            "splits": {"train": {"ok": 240}, "val": {"ok": 60}, "target_train": {"ok": 16},
                       "target_val": {"ok": 24}},
            "total": {"ok": 340, "bytes_stored": 340_000, "bytes_original": 500_000},
            "max_side": 32,
            "subset": {"subset": {"images": 240, "labels": 4080, "classes_covered": 40,
                                  "labels_per_image_mean": 17.0}},
        },
    }.items():  # fmt: skip
        (run / stage).mkdir(parents=True, exist_ok=True)
        (run / stage / "metrics.json").write_text(json.dumps(payload))
    (run / "evaluate").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(  # notebook 06's columns, figures in percent
        {"k": range(1, 11), "precision_at_k": 50.0, "recall_at_k": 40.0,
         "f1_at_k": np.linspace(10, 30, 10), "f1_per_image_at_k": 20.0}
    ).to_csv(run / "evaluate" / "multilabel.csv", index=False)  # fmt: skip


@pytest.fixture
def smoke(runs: Path) -> Params:
    params = load_params("smoke")
    write_results(params)
    write_stage_metrics(params)
    return params


def test_comparison_one_row_per_checkpoint(smoke: Params) -> None:
    table = report.comparison(report.load_results(smoke), smoke)
    assert table["ckpt"].tolist() == [1, 2, 3, 4, 5]
    row = table.set_index("ckpt").loc[1]
    assert row["paper_top1_224"] == 77.8 and row["paper_top5_299"] == 94.5
    assert row["ours_img_size_224"] == smoke.finetune.base_size
    assert row["ours_img_size_299"] == smoke.finetune.large_size
    assert row["ours_top1_224_mean"] == 41.0 and row["ours_top1_299_mean"] == 42.0
    assert row["ours_top1_224_std"] == pytest.approx(np.std([40, 42], ddof=1), abs=0.01)
    assert row["diff_top1_224"] == pytest.approx(41.0 - 77.8)
    assert np.isnan(row["reimpl_top1_224"])
    assert table.set_index("ckpt").loc[2, "reimpl_top1_224"] == 76.7
    ckpt5 = table.set_index("ckpt").loc[5]
    assert np.isnan(ckpt5["paper_top1_224"]) and not np.isnan(ckpt5["ours_top1_224_mean"])


def test_results_are_checked_against_the_contract(runs: Path) -> None:
    params = load_params("smoke")
    with pytest.raises(FileNotFoundError, match="ckpt<N>/results.csv"):
        report.load_results(params)
    write_results(params, ckpts=(1,))
    path = params.run_dir / "finetune" / "ckpt1" / "results.csv"
    pd.read_csv(path).drop(columns=["top5"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"ckpt1/results.csv: missing columns \['top5'\]"):
        report.load_results(params)
    write_results(params, ckpts=(1,))
    frame = pd.read_csv(path)
    frame.loc[0, "img_size"] = 999
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="999"):
        report.comparison(report.load_results(params), params)


def test_markdown_and_latex(smoke: Params) -> None:
    display = report.display_table(report.comparison(report.load_results(smoke), smoke))
    md = report.markdown_table(display).splitlines()
    assert len(md) == 2 + 5 and md[0].count("|") == len(display.columns) + 1
    assert "41.0 ± 1.4 (-36.8)" in md[2]
    tex = report.latex_table(display, "caption with 50% & more")
    assert r"\begin{tabular}{rl" in tex and r"50\% \& more" in tex and r"$\pm$" in tex
    assert tex.count(r"\\") == 1 + 5


def test_summary_says_whether_pretraining_helped(smoke: Params) -> None:
    table = report.comparison(report.load_results(smoke), smoke)
    text = report.summary_sentences(table, smoke, 0.1308, 240)
    assert text.count(". ") == 1  # two sentences
    assert "gains 4.5 points" in text and "beyond the spread" in text
    assert "0.13M-parameter" in text


def test_dataset_and_multilabel_tables(smoke: Params) -> None:
    data = report.dataset_table(smoke).set_index("key")
    assert data.loc["max_depth", "paper"] == 16 and data.loc["max_depth", "ours_full_list"] == 9
    assert data.loc["train_images", "ours_subset"] == 240
    assert data.loc["images_per_class_mean", "ours_subset"] == 4080 / 40
    assert data.loc["classes", "ours_over_paper"] == float(f"{64 / 11166:.4g}")
    multi = report.multilabel_table(smoke)
    assert multi["paper"].tolist() == [23.3, 28.1]
    assert multi["ours"].tolist() == pytest.approx([np.linspace(10, 30, 10)[4], 30.0], abs=0.01)
    (smoke.run_dir / "evaluate" / "multilabel.csv").write_text("k,f1\n5,0.2\n")
    with pytest.raises(ValueError, match=r"multilabel.csv: missing columns \['f1_at_k'\]"):
        report.multilabel_table(smoke)


def test_hierarchy_on_the_authors_dictionary(runs: Path, shared: Path) -> None:
    dictionary = str(shared / "dictionary_and_semantic_hierarchy.txt")
    params = load_params("smoke", {"data.dictionary": dictionary})
    figures = report.hierarchy_figures(params)
    assert figures["classes"] == 11166 and figures["max_depth"] == 16
    assert round(figures["mean_depth"], 2) == 7.47


def test_deviations_are_computed_from_the_parameters(smoke: Params) -> None:
    results = report.load_results(smoke)
    devs = report.deviations(smoke, results).set_index("aspect")
    assert "hue ±0.0" in devs.loc["colour augmentation", "ours"]
    assert devs.loc["colour augmentation", "deviates"]
    assert "240 images" in devs.loc["data size", "ours"]
    assert f"pretrain {smoke.pretrain.image_size}" in devs.loc["resolution", "ours"]
    assert "2 seeds" in devs.loc["runs", "ours"]
    assert "0.13M parameters" in devs.loc["model depth and width", "ours"]  # timm's millions
    # with the paper's hue, colour augmentation is no deviation
    same = load_params("smoke", {"pipeline.hue_delta": 0.2})
    assert (
        not report.deviations(same, results)
        .set_index("aspect")
        .loc["colour augmentation", "deviates"]
    )
    diff = report.parameter_differences(smoke).set_index("key")
    assert diff.loc["pipeline.hue_delta", "ours"] == "0.0"
    assert diff.loc["model.width", "paper"] == "64"
    assert not any(k.startswith(("data.", "download.", "report.")) for k in diff.index)
    md = report.deviations_markdown(
        report.deviations(smoke, results), report.parameter_differences(smoke)
    )
    assert md.startswith("## Deviations from the paper") and "- **colour augmentation**" in md


def test_plans_table(smoke: Params) -> None:
    plans = report.plans(smoke).set_index("label")
    paper_row = plans.loc["paper: 128 GPUs, 90 h (stated)"]
    assert paper_row["wall_hours"] == 90.0 and paper_row["gpu_hours"] == 11520.0
    counts = [f"full ML-Images, {n} x {smoke.plan.gpu}" for n in smoke.plan.gpu_counts]
    assert plans.loc[counts, "wall_hours"].is_monotonic_decreasing
    assert {"profile smoke", "profile default", "profile paper"} <= set(plans.index)


def test_the_same_inputs_give_the_same_tables(smoke: Params, runs: Path) -> None:
    first = report.run_report_stage(smoke)
    out = Path(first["out"])
    before = {name: (out / name).read_bytes() for name in report.TABLES}
    second = report.run_report_stage(smoke)
    assert first == second
    assert {name: (out / name).read_bytes() for name in report.TABLES} == before
    assert first["published"] == []  # smoke publishes nothing


def test_publish_copies_and_rewrites_the_readme(smoke: Params, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.README_START}\nold\n{report.README_END}\n\nrest\n")
    params = load_params(
        "smoke", {"report.publish_dir": str(tmp_path / "results"), "report.readme": str(readme)}
    )
    result = report.run_report_stage(params)
    published = {Path(p).name for p in result["published"]}
    assert set(report.TABLES) | set(report.FIGURES) | {"README.md"} == published
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{report.README_END}\n\nrest\n")
    assert "| ckpt | setting |" in text and "In miniature" in text
    report.run_report_stage(params)
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="README.md: expected the markers"):
        report.update_readme(readme, "x")


def test_cli_report(smoke: Params, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--params", "smoke", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["ckpt"] for c in out["checkpoints"]] == [1, 2, 3, 4, 5]
    assert (Path(out["out"]) / "paper_vs_ours.csv").is_file()
