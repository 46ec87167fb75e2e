"""Paper vs ours (notebook 07): the report stage, which reads the fine-tuning results
(`finetune/ckpt<N>/results.csv`), builds every table, saves the tables and figures, and
publishes them.

Writes CSV, Markdown and LaTeX into `runs/<profile>/report/` and, on a profile that names them
(`report.publish_dir`, `report.readme`: the default profile only), copies them to `results/`
and rewrites the README's results section. Every table is a pure function of the earlier
stages' files and the parameters, so a rerun on the same inputs writes the same bytes. The
claims (`claims.csv`: paper's difference, ours over paired seeds with a 95% interval, verdict)
and the baselines (`baselines.csv`) come from `mlimages.report.verdicts`, the comparison with
the paper's figures from `paper_comparison`, the deviations and plans from `deviations`; the
claims and baselines lead the README's results section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.core.atomic import copy_files_atomic, write_json_atomic, write_text_atomic
from mlimages.paper import facts
from mlimages.report import verdicts
from mlimages.report.deviations import deviations, deviations_markdown, parameter_differences, plans
from mlimages.report.paper_comparison import (
    comparability_sentence,
    comparison,
    dataset_table,
    display_table,
    multilabel_table,
    per_seed,
    read_json,
    summary_sentences,
)
from mlimages.report.text_tables import latex_table, markdown_table
from mlimages.train import plan

STAGE = layout.REPORT
RESULT_COLUMNS = (
    "ckpt", "setting", "seed", "model", "img_size", "top1", "top5",
    "param_count", "train_sizes", "steps",
)  # fmt: skip
OPTIONAL_COLUMNS = ("train_top1",)  # kept where notebook 05 writes them
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
TABLES = (
    "claims.csv", "claims.md", "baselines.csv", "baselines.md",
    "paper_vs_ours.csv", "paper_vs_ours.md", "paper_vs_ours.tex", "per_seed.csv",
    "dataset_statistics.csv", "multilabel.csv", "deviations.md", "deviations.csv",
    "parameter_differences.csv", "plans.csv", "paper_run.md",
)  # fmt: skip
FIGURES = ("checkpoints.png", "dataset_statistics.png", "loss_coefficients.png")

# --- inputs --------------------------------------------------------------------------------


def results_paths(params: Params) -> list[Path]:
    return sorted((params.run_dir / layout.FINETUNE).glob(layout.RESULTS_FILES))


def load_results(params: Params) -> pd.DataFrame:
    """Every `finetune/ckpt<N>/results.csv` of the profile, checked against the contract."""
    paths = results_paths(params)
    if not paths:
        raise FileNotFoundError(
            f"no fine-tuning results under {params.run_dir / 'finetune'}; expected "
            "ckpt<N>/results.csv from notebook 05 (mlimages finetune)"
        )
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected {list(RESULT_COLUMNS)}")
        if frame[["top1", "top5"]].isna().any().any() or len(frame) == 0:
            raise ValueError(f"{path}: expected one row per (seed, size) with top1 and top5")
        optional = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
        frames.append(frame[[*RESULT_COLUMNS, *optional]])
    results = pd.concat(frames, ignore_index=True)
    return results.sort_values(["ckpt", "img_size", "seed"], kind="stable").reset_index(drop=True)


# --- figures -------------------------------------------------------------------------------


def plot_checkpoints(table: pd.DataFrame):
    """Per checkpoint, ours (mean, sd over seeds as error bars) against the paper's figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    x = np.arange(len(table))
    for col, role in enumerate(facts.PAPER_SIZES):
        for row, (metric, label) in enumerate((("top1", "top-1"), ("top5", "top-5"))):
            ax = axes[row, col]
            ax.bar(x - 0.2, table[f"paper_{metric}_{role}"], 0.4, label="paper", color="0.6")
            ax.bar(
                x + 0.2,
                table[f"ours_{metric}_{role}_mean"],
                0.4,
                yerr=table[f"ours_{metric}_{role}_std"].fillna(0),
                capsize=3,
                label="ours (mean ± sd over seeds)",
                color="tab:blue",
            )
            sizes = table[f"ours_img_size_{role}"].dropna().astype(int).unique()
            ours_px = "/".join(map(str, sizes))
            ax.set(
                ylim=(0, 100),
                ylabel=f"{label} (%)",
                title=f"{label}: paper @{role}, ours @{ours_px}",
            )
            ax.set_xticks(x, [f"ckpt {c}" for c in table["ckpt"]])
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_dataset(table: pd.DataFrame):
    """Each statistic of ours over the paper's (log scale): how far the miniature is."""
    import matplotlib.pyplot as plt

    shown = table.dropna(subset=["ours_over_paper"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(shown), 2) + 1))
    ax.barh(shown["figure"], shown["ours_over_paper"], color="tab:blue")
    ax.axvline(1.0, color="k", lw=1)
    ax.set(xscale="log", xlabel="ours / paper (log scale; 1 = equal)",
           title="Dataset statistics: ours against the paper's")  # fmt: skip
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


# --- the stage -----------------------------------------------------------------------------


def build(params: Params) -> dict[str, Any]:
    """Every table of the report, from the runs' files and the parameters."""
    results = load_results(params)
    table = comparison(results, params)
    differences = parameter_differences(params)
    devs = deviations(params, results)
    download = read_json(params.run_dir / layout.DOWNLOAD / layout.METRICS_FILE) or {}
    images = download.get("splits", {}).get("train", {}).get("ok") or plan.profile_images(params)
    claims = verdicts.claim_results(results, params)
    multilabel = verdicts.read_multilabel(params.run_dir / layout.EVALUATE / "multilabel.csv")
    baselines = verdicts.baselines_table(results, params, multilabel)
    param_count = float(results["param_count"].iloc[0])
    return {
        "claim_results": claims,
        "claims": verdicts.claims_table(claims),
        "claims_display": verdicts.claims_display(claims),
        "claims_text": verdicts.claims_text(claims),
        "baselines": baselines,
        "baselines_display": verdicts.baselines_display(baselines),
        "results": results,
        "comparison": table,
        "display": display_table(table),
        "per_seed": per_seed(results, params),
        "dataset": dataset_table(params),
        "multilabel": multilabel_table(params),
        "deviations": devs,
        "differences": differences,
        "deviations_md": deviations_markdown(devs, differences),
        "plans": plans(params),
        "paper_run": plan.paper_arithmetic(),
        "comparability": comparability_sentence(params, param_count, int(images)),
        "summary": summary_sentences(claims, params, param_count, int(images)),
    }


def save(report: dict[str, Any], params: Params) -> Path:
    """Write the tables (CSV, Markdown, LaTeX), figures and metrics.json to the stage folder."""
    import matplotlib.pyplot as plt

    out = params.stage_dir(STAGE)
    write_csv_atomic(report["claims"], out / "claims.csv")
    write_text_atomic(
        out / "claims.md",
        markdown_table(report["claims_display"]) + "\n" + report["claims_text"] + "\n",
    )
    write_csv_atomic(report["baselines"], out / "baselines.csv")
    write_text_atomic(
        out / "baselines.md",
        "Every figure beside a baseline computed in the same run (percent).\n\n"
        + markdown_table(report["baselines_display"]),
    )
    report["comparison"].to_csv(out / "paper_vs_ours.csv", index=False)
    caption = "ImageNet-val top-1/top-5 (%) of the paper against ours (mean ± sd over seeds)"
    write_text_atomic(
        out / "paper_vs_ours.md",
        markdown_table(report["display"]) + "\n" + report["comparability"] + "\n",
    )
    write_text_atomic(out / "paper_vs_ours.tex", latex_table(report["display"], caption))
    report["per_seed"].to_csv(out / "per_seed.csv", index=False)
    report["dataset"].to_csv(out / "dataset_statistics.csv", index=False)
    report["multilabel"].to_csv(out / "multilabel.csv", index=False)
    report["deviations"].to_csv(out / "deviations.csv", index=False)
    report["differences"].to_csv(out / "parameter_differences.csv", index=False)
    write_text_atomic(out / "deviations.md", report["deviations_md"])
    report["plans"].to_csv(out / "plans.csv", index=False)
    arithmetic = "\n".join(f"- {line}" for line in report["paper_run"])
    write_text_atomic(out / "paper_run.md", f"## The paper's run, replayed\n\n{arithmetic}\n")
    for name, fig in (
        ("checkpoints.png", plot_checkpoints(report["comparison"])),
        ("dataset_statistics.png", plot_dataset(report["dataset"])),
        ("loss_coefficients.png", _coefficients_figure(params)),
    ):
        fig.savefig(out / name, dpi=100, metadata={"Software": None})
        plt.close(fig)
    write_json_atomic(
        out / layout.METRICS_FILE,
        {
            "claims": _records(report["claims"]),
            "checkpoints": report["comparison"].replace({np.nan: None}).to_dict("records"),
            "summary": report["summary"],
            "deviations": int(report["deviations"]["deviates"].sum()),
        },
    )
    return out


def _coefficients_figure(params: Params):
    """The adaptive loss's class weights during pretraining (notebook 04's figure), or a
    figure that says why there is none."""
    import matplotlib.pyplot as plt

    from mlimages.report import training

    try:
        return training.plot_coefficients(params.run_dir / layout.PRETRAIN)
    except (FileNotFoundError, ValueError) as exc:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, f"no loss coefficients: {exc}", ha="center", va="center", fontsize=7)
        ax.set_axis_off()
        return fig


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """A table as CSV, written then renamed."""
    return write_text_atomic(path, frame.to_csv(index=False))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def publish(params: Params, out: Path) -> list[Path]:
    """Copy the tables and figures to `report.publish_dir` and rewrite `report.readme`'s
    results section; nothing on profiles that set neither (smoke runs never overwrite them)."""
    written: list[Path] = []
    if params.report.publish_dir:
        target = params.resolve_path(params.report.publish_dir)
        written += copy_files_atomic((*TABLES, *FIGURES), out, target)
    if params.report.readme:
        readme = params.resolve_path(params.report.readme)
        section = readme_section(out, params)
        update_readme(readme, section)
        written.append(readme)
    return written


def readme_section(out: Path, params: Params) -> str:
    """The README's results section: the claims with their verdicts first, then the
    baselines, then the paper-vs-ours table (claims.md, baselines.md, paper_vs_ours.md)."""
    where = params.report.publish_dir or str(out)

    def read(name: str) -> str:
        return (out / name).read_text(encoding="utf-8").rstrip() + "\n"

    return (
        f"Generated by notebook 07 on the `{params.profile}` profile (`make study`); tables, "
        f"figures and the deviations from the paper are in `{where}/`.\n\n"
        "### Claims of the paper: verdicts\n\n"
        "Top-1 differences in points between the checkpoints each claim names; ours is the "
        "mean over seeds of the paired (same-seed) differences with its 95% interval.\n\n"
        + read("claims.md")
        + "\n### Baselines\n\n"
        + read("baselines.md")
        + "\n### Paper vs ours\n\n"
        + read("paper_vs_ours.md")
    )


def update_readme(
    readme: Path, section: str, start_marker: str = README_START, end_marker: str = README_END
) -> Path:
    """Replace the text between two markers (the results section's by default); an error
    names the file if they are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(
            f"{readme}: expected the markers {start_marker} and {end_marker} (in that order) "
            "around the section they enclose"
        )
    new = text[: start + len(start_marker)] + "\n" + section.rstrip() + "\n" + text[end:]
    return write_text_atomic(readme, new)


def run_report_stage(params: Params) -> dict[str, Any]:
    """Build, save and publish; returns what `mlimages report --json` prints."""
    params.write(params.stage_dir(STAGE) / layout.PARAMS_FILE)
    report = build(params)
    out = save(report, params)
    published = publish(params, out)
    return {
        "out": str(out),
        "published": [str(p) for p in published],
        "claims": _records(report["claims"]),
        "checkpoints": report["comparison"].replace({np.nan: None}).to_dict("records"),
        "summary": report["summary"],
    }
