"""Paper vs ours: the comparison built from fixture results, the deviations, publishing, and
tables that a rerun on the same inputs writes byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlimages import cli
from mlimages.config.params import Params, load_params
from mlimages.core import stats
from mlimages.report import deviations, paper_comparison, paper_vs_ours, text_tables, verdicts

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
    pd.DataFrame(  # notebook 06's columns, figures in percent, the class prior's beside
        {"k": range(1, 11), "precision_at_k": 50.0, "recall_at_k": 40.0,
         "f1_at_k": np.linspace(10, 30, 10), "f1_per_image_at_k": 20.0, "map": 61.5,
         "images": 60, "prior_precision_at_k": 20.0, "prior_recall_at_k": 10.0,
         "prior_f1_at_k": np.linspace(5, 14, 10), "prior_f1_per_image_at_k": 8.0,
         "prior_map": 12.25}
    ).to_csv(run / "evaluate" / "multilabel.csv", index=False)  # fmt: skip


@pytest.fixture
def smoke(runs: Path) -> Params:
    params = load_params("smoke")
    write_results(params)
    write_stage_metrics(params)
    return params


def test_comparison_one_row_per_checkpoint(smoke: Params) -> None:
    table = paper_comparison.comparison(paper_vs_ours.load_results(smoke), smoke)
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
        paper_vs_ours.load_results(params)
    write_results(params, ckpts=(1,))
    path = params.run_dir / "finetune" / "ckpt1" / "results.csv"
    pd.read_csv(path).drop(columns=["top5"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"ckpt1/results.csv: missing columns \['top5'\]"):
        paper_vs_ours.load_results(params)
    write_results(params, ckpts=(1,))
    frame = pd.read_csv(path)
    frame.loc[0, "img_size"] = 999
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="999"):
        paper_comparison.comparison(paper_vs_ours.load_results(params), params)


def test_markdown_and_latex(smoke: Params) -> None:
    display = paper_comparison.display_table(
        paper_comparison.comparison(paper_vs_ours.load_results(smoke), smoke)
    )
    md = text_tables.markdown_table(display).splitlines()
    assert len(md) == 2 + 5 and md[0].count("|") == len(display.columns) + 1
    assert "41.0 ± 1.4 (-36.8)" in md[2]
    tex = text_tables.latex_table(display, "caption with 50% & more")
    assert r"\begin{tabular}{rl" in tex and r"50\% \& more" in tex and r"$\pm$" in tex
    assert tex.count(r"\\") == 1 + 5


def seed_rows(params: Params, top1: dict[tuple[int, str], list[float]]) -> pd.DataFrame:
    """Fine-tuning results rows (the contract's columns) from (ckpt, "base"/"large") -> top-1
    a seed (seed 0, 1, ...)."""
    f = params.finetune
    rows = [
        {
            "ckpt": ckpt,
            "setting": f"setting {ckpt}",
            "seed": seed,
            "model": "m",
            "img_size": f.base_size if size == "base" else f.large_size,
            "top1": value,
            "top5": 90.0,
            "param_count": 0.1,
            "train_sizes": "24",
            "steps": 4,
        }  # fmt: skip
        for (ckpt, size), values in top1.items()
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=list(paper_vs_ours.RESULT_COLUMNS))


def test_claims_pair_seeds_and_read_the_interval(runs: Path) -> None:
    params = load_params("smoke")
    results = seed_rows(
        params,
        {
            (1, "base"): [40.0, 42.0, 44.0, 99.0],  # seed 3 has no ckpt 2 partner: dropped
            (2, "base"): [43.0, 44.0, 47.0],  # ckpt 2 - ckpt 1: 3, 2, 3
            (4, "base"): [43.0, 44.0, 47.0],  # ckpt 2 - ckpt 4: 0, 0, 0
            (2, "large"): [52.0, 53.0, 51.0],
            (3, "large"): [50.0, 50.0, 50.0],  # ckpt 3 - ckpt 2: -2, -3, -1
            (4, "large"): [55.0, 56.0, 57.0],  # ckpt 3 - ckpt 4: -5, -6, -7
            (5, "base"): [30.0, 31.0],  # no ckpt 6 (random-feature probe) results
        },
    )
    found = verdicts.claim_results(results, params)
    table = verdicts.claims_table(found)
    assert tuple(table.columns) == verdicts.CLAIM_COLUMNS
    assert table["paper"].iloc[:4].tolist() == [1.0, 1.23, 1.13, 3.0]  # mlimages.paper.facts
    assert np.isnan(table["paper"].iloc[4])
    # mean 8/3, sd 1/sqrt(3), half-width t(0.975, 2) = 4.3027 * sd / sqrt(3) = 1.4342
    first = table.iloc[0]
    assert (first["n_seeds"], first["ours_mean"]) == (3, 2.67)
    assert (first["ci_low"], first["ci_high"]) == (1.23, 4.1)
    assert first["verdict"] == stats.REPRODUCED
    assert "ckpt 2 - ckpt 1, top-1 at 24 px (paper at 224)" in first["claim"]
    # mean -2, sd 1: [-4.48, 0.48] contains zero
    assert table.iloc[1][["ours_mean", "ci_low", "ci_high"]].tolist() == [-2.0, -4.48, 0.48]
    assert table["verdict"].tolist() == [
        stats.REPRODUCED, stats.INCONCLUSIVE, stats.NOT_REPRODUCED, stats.INCONCLUSIVE,
        stats.INCONCLUSIVE,
    ]  # fmt: skip
    assert table.iloc[2][["ci_low", "ci_high"]].tolist() == [-8.48, -3.52]  # clear of zero
    assert table.iloc[3][["ci_low", "ci_high"]].tolist() == [0.0, 0.0]  # zero variance at 0
    probe = table.iloc[4]
    assert (
        probe["n_seeds"] == 0
        and np.isnan(probe["ours_mean"])
        and "ckpt 5 - ckpt 6" in (probe["claim"])
    )
    text = verdicts.claims_text(found)
    assert "ours +2.7 points at 24 px, 95% interval [+1.2, +4.1] over 3 paired seeds: " in text
    assert "paper: ckpt 3 - ckpt 4 = +1.13 points at 299 px" in text
    assert "ours lacks ckpt 6 at 24 px" in text
    assert verdicts.VERDICT_RULE in text and "clears zero by more than that" in text
    shown = verdicts.claims_display(found)
    assert shown["ours (95% CI)"].tolist()[1] == "-2.0 [-4.5, +0.5]"
    assert shown["ours (95% CI)"].tolist()[4] == "– (no ckpt 6 results)"
    twice = pd.concat([results, results.iloc[[0]]])
    with pytest.raises(ValueError, match=r"ckpt 1 at 24 px has seeds \[0\] more than once"):
        verdicts.claim_results(twice, params)


def test_baselines_beside_every_figure(smoke: Params) -> None:
    write_results(smoke, ckpts=(6,))  # the random-feature probe: 36 % top-1 (37 at large)
    results = paper_vs_ours.load_results(smoke)
    results.loc[results["ckpt"] == 1, "train_top1"] = 90.0
    multilabel = verdicts.read_multilabel(smoke.run_dir / "evaluate" / "multilabel.csv")
    table = verdicts.baselines_table(results, smoke, multilabel)
    assert tuple(table.columns) == verdicts.BASELINE_COLUMNS
    by = table.set_index("figure")
    assert by.loc["pretrained model, validation mAP"].tolist() == [
        61.5,
        12.25,
        "class-prior ranking",
    ]
    assert by.loc["pretrained model, validation instance F1@5", "baseline"] == 9.0
    assert by.loc["pretrained model, validation instance P@10", "ours"] == 50.0
    assert "pretrained model, validation instance R@3" in by.index
    base, large = smoke.finetune.base_size, smoke.finetune.large_size
    probe = by.loc[f"ckpt 5 top-1 @{large} px (ML-Images features, linear probe)"]
    assert probe.tolist() == [36.0, 37.0, "random-feature linear probe"]
    # four target classes in the smoke miniature: chance 25 % top-1, top-5 capped at 100 %
    assert by.loc[f"ckpt 1 top-1 @{base} px"].tolist() == [41.0, 25.0, "chance"]
    assert by.loc[f"ckpt 6 top-5 @{large} px"].tolist() == [70.5, 100.0, "chance"]
    assert (table["baseline_name"] == "chance").sum() == 6 * 2 * 2
    trained = by.loc[f"ckpt 1 top-1 @{base} px (validation; target only)"]
    assert trained.tolist() == [41.0, 90.0, verdicts.TRAINING_SET]
    claims = verdicts.claims_table(verdicts.claim_results(results, smoke)).iloc[4]
    assert (claims["ours_mean"], claims["n_seeds"]) == (-1.0, 2)
    assert claims["verdict"] == stats.NOT_REPRODUCED  # ckpt 5 below ckpt 6 on both seeds
    assert verdicts.chance(1, 1000) == 0.1 and np.isnan(verdicts.chance(1, None))


def test_summary_compares_the_checkpoints_each_claim_names(smoke: Params) -> None:
    found = verdicts.claim_results(paper_vs_ours.load_results(smoke), smoke)
    text = paper_comparison.summary_sentences(found, smoke, 0.1308, 240)
    # ckpt 2 - ckpt 1 at base: 5 and 4 points on the two seeds
    assert "ours +4.5 points at 24 px, 95% interval [-1.9, +10.9] over 2 paired seeds" in text
    assert "ckpt 3 - ckpt 1" not in text and "ckpt 3 - ckpt 2" in text
    assert "0.13M-parameter" in text and verdicts.HARDWARE in text


def test_dataset_and_multilabel_tables(smoke: Params) -> None:
    data = paper_comparison.dataset_table(smoke).set_index("key")
    assert data.loc["max_depth", "paper"] == 16 and data.loc["max_depth", "ours_full_list"] == 9
    assert data.loc["train_images", "ours_subset"] == 240
    assert data.loc["images_per_class_mean", "ours_subset"] == 4080 / 40
    assert data.loc["classes", "ours_over_paper"] == float(f"{64 / 11166:.4g}")
    multi = paper_comparison.multilabel_table(smoke)
    assert multi["paper"].tolist() == [23.3, 28.1]
    assert multi["ours"].tolist() == pytest.approx([np.linspace(10, 30, 10)[4], 30.0], abs=0.01)
    (smoke.run_dir / "evaluate" / "multilabel.csv").write_text("k,f1\n5,0.2\n")
    with pytest.raises(ValueError, match=r"multilabel.csv: missing columns \['f1_at_k'\]"):
        paper_comparison.multilabel_table(smoke)


def test_hierarchy_on_the_authors_dictionary(runs: Path, shared: Path) -> None:
    dictionary = str(shared / "dictionary_and_semantic_hierarchy.txt")
    params = load_params("smoke", {"data.dictionary": dictionary})
    figures = paper_comparison.hierarchy_figures(params)
    assert figures["classes"] == 11166 and figures["max_depth"] == 16
    assert round(figures["mean_depth"], 2) == 7.47


def test_deviations_are_computed_from_the_parameters(smoke: Params) -> None:
    results = paper_vs_ours.load_results(smoke)
    devs = deviations.deviations(smoke, results).set_index("aspect")
    assert "hue ±0.0" in devs.loc["colour augmentation", "ours"]
    assert devs.loc["colour augmentation", "deviates"]
    assert "240 images" in devs.loc["data size", "ours"]
    assert f"pretrain {smoke.pretrain.image_size}" in devs.loc["resolution", "ours"]
    assert "2 seeds" in devs.loc["runs", "ours"]
    assert "0.13M parameters" in devs.loc["model depth and width", "ours"]  # timm's millions
    # with the paper's hue, colour augmentation is no deviation
    same = load_params("smoke", {"pipeline.hue_delta": 0.2})
    assert (
        not deviations.deviations(same, results)
        .set_index("aspect")
        .loc["colour augmentation", "deviates"]
    )
    diff = deviations.parameter_differences(smoke).set_index("key")
    assert diff.loc["pipeline.hue_delta", "ours"] == "0.0"
    assert diff.loc["model.width", "paper"] == "64"
    not_method = ("data.", "download.", "report.", "experiments.")
    assert not any(k.startswith(not_method) for k in diff.index)
    md = deviations.deviations_markdown(
        deviations.deviations(smoke, results), deviations.parameter_differences(smoke)
    )
    assert md.startswith("## Deviations from the paper") and "- **colour augmentation**" in md


def test_plans_table(smoke: Params) -> None:
    plans = deviations.plans(smoke).set_index("label")
    paper_row = plans.loc["paper: 128 GPUs, 90 h (stated)"]
    assert paper_row["wall_hours"] == 90.0 and paper_row["gpu_hours"] == 11520.0
    counts = [f"full ML-Images, {n} x {smoke.plan.gpu}" for n in smoke.plan.gpu_counts]
    assert plans.loc[counts, "wall_hours"].is_monotonic_decreasing
    assert {"profile smoke", "profile default", "profile paper"} <= set(plans.index)


def test_the_same_inputs_give_the_same_tables(smoke: Params, runs: Path) -> None:
    first = paper_vs_ours.run_report_stage(smoke)
    out = Path(first["out"])
    before = {name: (out / name).read_bytes() for name in paper_vs_ours.TABLES}
    second = paper_vs_ours.run_report_stage(smoke)
    assert first == second
    assert {name: (out / name).read_bytes() for name in paper_vs_ours.TABLES} == before
    assert first["published"] == []  # smoke publishes nothing


def test_publish_copies_and_rewrites_the_readme(smoke: Params, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n{paper_vs_ours.README_START}\nold\n{paper_vs_ours.README_END}\n\nrest\n"
    )
    params = load_params(
        "smoke", {"report.publish_dir": str(tmp_path / "results"), "report.readme": str(readme)}
    )
    result = paper_vs_ours.run_report_stage(params)
    published = {Path(p).name for p in result["published"]}
    assert set(paper_vs_ours.TABLES) | set(paper_vs_ours.FIGURES) | {"README.md"} == published
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{paper_vs_ours.README_END}\n\nrest\n")
    claims, baselines = text.index("| claim | paper |"), text.index("| figure | ours |")
    assert claims < baselines < text.index("| ckpt | setting |")
    assert "Verdicts are computed from the interval" in text
    assert "Absolute accuracies are not comparable" in text
    paper_vs_ours.run_report_stage(params)
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="README.md: expected the markers"):
        paper_vs_ours.update_readme(readme, "x")


def test_cli_report(smoke: Params, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--params", "smoke", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["ckpt"] for c in out["checkpoints"]] == [1, 2, 3, 4, 5]
    assert (Path(out["out"]) / "paper_vs_ours.csv").is_file()
    assert [c["n_seeds"] for c in out["claims"]] == [2, 2, 2, 2, 0]
    claims = pd.read_csv(Path(out["out"]) / "claims.csv")
    assert tuple(claims.columns) == verdicts.CLAIM_COLUMNS and len(claims) == 5
    baselines = pd.read_csv(Path(out["out"]) / "baselines.csv")
    assert tuple(baselines.columns) == verdicts.BASELINE_COLUMNS
