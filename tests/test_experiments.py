"""The experiments' points, tables, intervals, figures and README section (notebook 08)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mlimages.config.params import load_params
from mlimages.study import experiment_report, experiments

matplotlib.use("Agg")


def _loss_table() -> pd.DataFrame:
    rows = []
    for seed in (0, 1, 2):
        for arm, shift in (("paper", 0.0), ("sigmoid", -5.0), ("asl", 0.0)):
            noise = (-1, 0, 1)[seed] * (0.5 if arm == "asl" else 0.1)
            values = [20 + shift + noise + i for i in range(6)]
            rows.append(
                {
                    "loss": arm,
                    "seed": seed,
                    **dict(zip(experiments.LOSS_METRICS, values, strict=True)),
                }
            )
    return pd.DataFrame(rows, columns=list(experiments.LOSS_COLUMNS))


def test_every_arm_is_paired_by_seed_against_the_papers_loss() -> None:
    summary = experiments.loss_summary(_loss_table())
    assert len(summary) == 3 * len(experiments.LOSS_METRICS)
    sigmoid = summary[(summary["loss"] == "sigmoid") & (summary["metric"] == "map")].iloc[0]
    assert sigmoid["difference"] == pytest.approx(-5.0) and sigmoid["reading"] == "lower"
    asl = summary[(summary["loss"] == "asl") & (summary["metric"] == "map")].iloc[0]
    assert asl["low"] < 0 < asl["high"] and asl["reading"] == "no difference shown"
    paper = summary[summary["loss"] == "paper"]
    assert (paper["reading"] == "reference").all() and paper["difference"].isna().all()
    against_asl = experiments.loss_summary(_loss_table(), {"sigmoid": "asl"})
    row = against_asl[(against_asl["loss"] == "sigmoid") & (against_asl["metric"] == "map")]
    assert row["against"].iloc[0] == "asl" and row["difference"].iloc[0] == pytest.approx(-5.0)
    assert "`sigmoid` against `paper`: mAP -5.0 [" in experiment_report.loss_findings(summary)


def test_loss_points_pair_pretraining_and_transfer_seeds_and_keep_the_data() -> None:
    params = load_params("smoke", {"experiments.loss_overrides": {"pretrain.steps": 4}})
    points = experiments.loss_points(params)
    names = [arm.name for arm in params.experiments.losses]
    assert list(points) == [f"{n}-seed{s}" for n in names for s in params.experiments.loss_seeds]
    first = points[f"{names[0]}-seed0"]
    assert first["seed"] == 0 and first["finetune.seeds"] == [0]
    assert first["pretrain.steps"] == 4
    assert first["subset.seed"] == first["records.seed"] == params.seed


def test_gains_are_paired_differences_to_the_from_scratch_checkpoint() -> None:
    rows = [
        {"ckpt": ckpt, "k": k, "seed": seed, "top1": base + gain * (ckpt == 2) + seed, "top5": 90}
        for k, base, gain in ((1, 10.0, 8.0), (4, 30.0, 2.0))
        for ckpt in (1, 2)
        for seed in (0, 1, 2)
    ]
    table = pd.DataFrame(rows, columns=list(experiments.EFFICIENCY_COLUMNS))
    summary = experiments.gains(table, "k")
    ckpt2 = summary[summary["ckpt"] == 2].set_index("k")
    assert ckpt2.loc[1, "gain"] == pytest.approx(8.0) and ckpt2.loc[4, "gain"] == pytest.approx(2.0)
    assert summary[summary["ckpt"] == 1]["gain"].isna().all()
    fig = experiment_report.plot_data_efficiency(table, summary)
    assert fig.axes[1].get_xscale() == "log"
    assert any(experiments.PAPER_K in line.get_xdata() for line in fig.axes[1].lines)


def test_the_papers_transfer_gain_is_its_ckpt_2_minus_ckpt_1() -> None:
    from mlimages.paper.facts import paper_accuracy

    expected = paper_accuracy(2, 224).top1 - paper_accuracy(1, 224).top1
    assert experiments.paper_gain() == pytest.approx(expected)


def test_novel_gains_stand_beside_the_seen_tasks() -> None:
    novel = pd.DataFrame(
        [{"ckpt": c, "seed": s, "top1": 10.0 * c + s, "top5": 50.0} for c in (1, 2) for s in (0, 1)]
    )
    efficiency = pd.DataFrame(
        [
            {"ckpt": c, "k": k, "seed": s, "top1": 20.0 * c + s, "top5": 60.0}
            for k in (4, 16)
            for c in (1, 2)
            for s in (0, 1)
        ]
    )
    summary = experiments.novel_summary(novel, efficiency, 16)
    gains = summary.dropna(subset=["gain"]).set_index("task")["gain"]
    assert gains.iloc[0] == pytest.approx(20.0) and gains.iloc[1] == pytest.approx(10.0)
    assert "seen" in gains.index[0] and "novel" in gains.index[1]
    assert len(experiments.novel_summary(novel, efficiency, 8)) == 2  # no seen run at K = 8
    assert experiment_report.plot_novel_classes(summary).axes


def test_frequency_thirds_rank_classes_by_training_images(
    smoke_stages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlimages.input import records

    monkeypatch.setenv("MLIMAGES_RUNS", str(smoke_stages))
    params = load_params("smoke")
    thirds = experiments.frequency_thirds(params)
    train = np.asarray(records.split_index(params.run_dir, "train").images_per_class)
    head, middle, tail = (thirds[name] for name in experiments.THIRDS)
    assert train[head].min() >= train[middle].max() >= train[middle].min() >= train[tail].max()
    assert abs(len(head) - len(tail)) <= 1
    assert len(set(np.concatenate([head, middle, tail]))) == sum(map(len, (head, middle, tail)))


def test_the_figures_stand_beside_the_class_prior_and_chance(
    smoke_stages: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlimages.input import records

    monkeypatch.setenv("MLIMAGES_RUNS", str(smoke_stages))
    params = load_params("smoke")
    thirds = experiments.frequency_thirds(params)
    train = np.asarray(records.split_index(params.run_dir, "train").images_per_class)
    rng = np.random.default_rng(0)
    labels = (rng.random((40, len(train))) < train / train.max() / 2).astype(np.float16)
    np.save(tmp_path / "labels.npy", labels)
    prior = experiments.prior_quality(params, tmp_path / "labels.npy", thirds)
    assert set(prior) == set(experiments.PRIOR_COLUMNS)
    assert all(0 <= value <= 100 for value in prior.values())
    # A prior ranks every image alike: its AP of a class is no better than the class's share
    # of positive images, so the head third (the most frequent classes) scores highest.
    assert prior["prior_map_head"] > prior["prior_map_tail"]

    loss = _loss_table().assign(**prior)
    table = experiments.baselines(params, loss).set_index("baseline")["value"]
    target = records.split_index(params.run_dir, "target_val").num_classes
    assert table["chance top-1, target task"] == pytest.approx(100 / target, abs=1e-3)
    assert table["class-prior mAP, all classes"] == pytest.approx(prior["prior_map"])
    fig = experiment_report.plot_loss_ablation(loss, experiments.chance_top1(params))
    drawn = [s[0][1] for c in fig.axes[0].collections for s in c.get_segments()]
    assert any(np.isclose(y, prior["prior_map"]) for y in drawn)  # the class prior's bar
    assert any(np.isclose(line.get_ydata()[0], 100 / target) for line in fig.axes[1].lines)


def test_saving_and_publishing_write_the_tables_and_the_readme_section(
    tmp_path: Path, runs: Path
) -> None:
    readme = tmp_path / "README.md"
    start, end = experiment_report.README_START, experiment_report.README_END
    readme.write_text(f"intro\n{start}\nold\n{end}\nend\n")
    params = load_params(
        "smoke", {"report.publish_dir": str(tmp_path / "results"), "report.readme": str(readme)}
    )
    loss = _loss_table()
    summary = experiments.loss_summary(loss)
    table = pd.DataFrame(
        [
            {"ckpt": c, "k": 1, "seed": s, "top1": 10.0 + c + s, "top5": 50.0}
            for c in (1, 2)
            for s in (0, 1)
        ]
    )
    k_summary = experiments.gains(table, "k")
    novel = table.drop(columns="k")
    n_summary = experiments.novel_summary(novel, None, 16)
    tables = {
        "loss_ablation": loss, "loss_ablation_summary": summary,
        "data_efficiency": table, "data_efficiency_summary": k_summary,
        "novel_classes": novel, "novel_classes_summary": n_summary,
        "baselines": pd.DataFrame([{"baseline": "chance top-1, target task", "value": 5.0}]),
    }  # fmt: skip
    figures = {
        "loss_ablation": experiment_report.plot_loss_ablation(loss),
        "data_efficiency": experiment_report.plot_data_efficiency(table, k_summary),
        "novel_classes": experiment_report.plot_novel_classes(n_summary),
    }
    out = experiment_report.save(params, tables, figures)
    section = experiment_report.readme_section(
        params, summary, k_summary, n_summary, tables["baselines"]
    )
    written = experiment_report.publish(params, out, section)
    assert len(written) == len(experiment_report.FILES) + 1
    published = pd.read_csv(tmp_path / "results" / "experiments" / "loss_ablation.csv")
    assert list(published.columns) == list(experiments.LOSS_COLUMNS)
    text = readme.read_text()
    assert "old" not in text and "**Loss ablation**" in text and text.endswith("end\n")
    assert not list((tmp_path / "results" / "experiments").glob(".*"))  # nothing half-written


@pytest.mark.parametrize("profile", ["default", "smoke"])
def test_every_point_of_a_profiles_experiments_resolves(profile: str) -> None:
    """A mistyped key in an arm or in loss_overrides stops the profile's test, not hour one."""
    params = load_params(profile)
    points = {
        **experiments.loss_points(params),
        **experiments.efficiency_points(params),
        "novel": experiments.novel_point(params),
    }
    for name, overrides in points.items():
        point = load_params(profile, overrides)
        assert point.finetune.seeds, name


def test_a_reference_arm_that_does_not_exist_is_refused() -> None:
    from mlimages.config.params import ParamsError

    arms = [{"name": "paper"}, {"name": "asl", "overrides": {"loss.kind": "asl"}, "against": "x"}]
    with pytest.raises(ParamsError, match="asl against x"):
        load_params("smoke", {"experiments.losses": arms})
