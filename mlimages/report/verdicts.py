"""The paper's claims with a verdict each, and every figure beside its baseline (notebook 07).

A reproduction is judged by its verdicts: for each claim, the paper's difference
between two checkpoints, ours as the mean of paired per-seed differences with a 95% interval
(`mlimages.core.stats`), and a verdict read off the interval. Every figure also stands beside a
baseline computed in the same run, so a reader sees what was learnt: chance for top-k on the
target task, the random-feature linear probe (ckpt 6) for the ML-Images linear probe
(ckpt 5), and the class-prior ranking (notebook 06's `prior_*` columns) for the pretrained
model's multi-label figures.

Inputs are the fine-tuning results table (`paper_vs_ours.load_results`: a row per ckpt, seed and
evaluation size), the evaluation stage's `multilabel.csv` and the parameters; a checkpoint
that was not run gives its claim no seeds and an `inconclusive` verdict, never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlimages.config.params import Params
from mlimages.core import stats
from mlimages.paper import facts

CLAIM_COLUMNS = ("claim", "paper", "ours_mean", "ci_low", "ci_high", "n_seeds", "verdict")
BASELINE_COLUMNS = ("figure", "ours", "baseline", "baseline_name")
RANDOM_PROBE_CKPT = 6  # "random init frozen -> linear probe": ckpt 5's probe on random features
CHANCE, RANDOM_PROBE, CLASS_PRIOR = "chance", "random-feature linear probe", "class-prior ranking"
TRAINING_SET = "training-set top-1 of the same runs"
MULTILABEL_KS = (1, 3, 5, 10)  # instance-level figures shown beside the class prior
MULTILABEL_FIGURES = (("precision", "P"), ("recall", "R"), ("f1", "F1"))


@dataclass(frozen=True)
class Claim:
    """`better` beats `worse` in top-1 at the base or large evaluation size."""

    statement: str
    better: int
    worse: int
    size: str  # "base" (plays the paper's 224) or "large" (its 299)
    ours: bool = False  # a claim of this study, not the paper's: predicts better > worse

    def role(self) -> int:
        """The paper's size this claim is stated at."""
        return facts.PAPER_SIZES[0 if self.size == "base" else 1]

    def paper_difference(self) -> float:
        """The paper's top-1 difference (points), from `mlimages.paper.facts`; NaN for ours."""
        if self.ours:
            return math.nan
        a, b = (facts.paper_accuracy(c, self.role()) for c in (self.better, self.worse))
        if a is None or b is None:
            raise ValueError(
                f"claim {self.statement!r}: mlimages.paper.facts has no top-1 of ckpt "
                f"{self.better} "
                f"and ckpt {self.worse} at {self.role()}"
            )
        return round(a.top1 - b.top1, 2)

    def expected(self) -> float:
        """The direction the verdict tests: the paper's difference, or + for ours."""
        return 1.0 if self.ours else self.paper_difference()


PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("ML-Images pretraining beats target-only training", 2, 1, "base"),
    Claim("224-then-299 beats 224 at the large size", 3, 2, "large"),
    Claim("224-then-299 beats 299 at the large size", 3, 4, "large"),
    Claim("testing at another size than training costs accuracy", 2, 4, "base"),
)
OUR_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "the ML-Images representation beats random features under a linear probe",
        5,
        RANDOM_PROBE_CKPT,
        "base",
        ours=True,
    ),
)
CLAIMS = PAPER_CLAIMS + OUR_CLAIMS


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    img_size: int  # our evaluation size
    paper: float
    interval: stats.Interval
    verdict: str
    missing: tuple[int, ...]  # checkpoints of the claim without results at that size

    def label(self) -> str:
        c = self.claim
        where = "ours; not in the paper" if c.ours else f"paper at {c.role()}"
        return (
            f"{c.statement}: ckpt {c.better} - ckpt {c.worse}, top-1 at {self.img_size} px "
            f"({where})"
        )


# --- claims --------------------------------------------------------------------------------


def size_of(params: Params, size: str) -> int:
    f = params.finetune
    return {"base": f.base_size, "large": f.large_size}[size]


def seed_values(results: pd.DataFrame, ckpt: int, img_size: int, metric: str) -> dict[int, float]:
    """seed -> `metric` of one checkpoint at one size; a seed twice is an error."""
    rows = results[(results["ckpt"] == ckpt) & (results["img_size"] == img_size)]
    twice = sorted(int(s) for s in rows.loc[rows["seed"].duplicated(), "seed"].unique())
    if twice:
        raise ValueError(
            f"results: ckpt {ckpt} at {img_size} px has seeds {twice} more than once; expected "
            "one row per (ckpt, seed, img_size)"
        )
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[metric], strict=True)}


def evaluate_claim(
    claim: Claim, results: pd.DataFrame, params: Params, metric: str = "top1"
) -> ClaimResult:
    """Ours for one claim: paired per-seed differences, their interval, the verdict."""
    size = size_of(params, claim.size)
    a, b = (seed_values(results, c, size, metric) for c in (claim.better, claim.worse))
    missing = tuple(c for c, values in ((claim.better, a), (claim.worse, b)) if not values)
    interval = stats.paired_interval(a, b)
    return ClaimResult(
        claim=claim,
        img_size=size,
        paper=claim.paper_difference(),
        interval=interval,
        verdict=stats.verdict(claim.expected(), interval.low, interval.high),
        missing=missing,
    )


def claim_results(
    results: pd.DataFrame, params: Params, claims: tuple[Claim, ...] = CLAIMS
) -> list[ClaimResult]:
    return [evaluate_claim(c, results, params) for c in claims]


def claims_table(found: list[ClaimResult]) -> pd.DataFrame:
    """`claims.csv`: claim, paper, ours_mean, ci_low, ci_high, n_seeds, verdict (points)."""
    rows = [
        {
            "claim": r.label(),
            "paper": r.paper,
            "ours_mean": _round(r.interval.mean),
            "ci_low": _round(r.interval.low),
            "ci_high": _round(r.interval.high),
            "n_seeds": r.interval.n,
            "verdict": r.verdict,
        }
        for r in found
    ]
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def claims_display(found: list[ClaimResult]) -> pd.DataFrame:
    """The claims as a reader reads them: ours as mean [95% interval] over paired seeds."""
    return pd.DataFrame(
        {
            "claim": [r.label() for r in found],
            "paper": ["–" if math.isnan(r.paper) else f"{r.paper:+.2f}" for r in found],
            "ours (95% CI)": [_ours_cell(r) for r in found],
            "seeds": [r.interval.n for r in found],
            "verdict": [f"**{r.verdict}**" for r in found],
        }
    )


def _ours_cell(r: ClaimResult) -> str:
    i = r.interval
    if r.missing:
        return f"– (no ckpt {' or '.join(map(str, r.missing))} results)"
    if i.n == 0:
        return "– (no seed run for both)"
    if i.n == 1:
        return f"{i.mean:+.1f} (one seed: no interval)"
    return f"{i.mean:+.1f} [{i.low:+.1f}, {i.high:+.1f}]"


def claim_sentence(r: ClaimResult) -> str:
    """One sentence a claim, comparing exactly the checkpoints it names."""
    c, i = r.claim, r.interval
    head = f"{c.statement[0].upper()}{c.statement[1:]}"
    theirs = (
        "ours, not the paper's"
        if c.ours
        else f"paper: ckpt {c.better} - ckpt {c.worse} = {r.paper:+.2f} points at {c.role()} px"
    )
    if r.missing or i.n == 0:
        lacking = " and ".join(f"ckpt {m}" for m in r.missing) or "a seed run for both"
        return f"{head} ({theirs}): {r.verdict}, ours lacks {lacking} at {r.img_size} px."
    if i.n == 1:
        return (
            f"{head} ({theirs}): ours {i.mean:+.1f} points at {r.img_size} px from one paired "
            f"seed, no interval, so {r.verdict}."
        )
    return (
        f"{head} ({theirs}): ours {i.mean:+.1f} points at {r.img_size} px, 95% interval "
        f"[{i.low:+.1f}, {i.high:+.1f}] over {i.n} paired seeds: {r.verdict}."
    )


VERDICT_RULE = (
    "Verdicts are computed from the interval, not from the mean: reproduced when the 95% "
    "interval of the mean paired difference (seeds paired, Student t with n - 1 degrees of "
    "freedom) lies entirely on the paper's side of zero, not reproduced when it lies entirely "
    "on the other side, inconclusive when it contains zero or fewer than two seeds pair up."
)
HARDWARE = (
    "Which figures move with the machine: every accuracy and mAP here (ours and the "
    "random-feature probe's) comes from float32 kernels whose order of summation differs by "
    "CPU and TensorFlow build, so a single seed's top-1 can move by several points on another "
    "machine (measured: up to 10.7 for ckpt 1 under TensorFlow's other CPU kernels; README, "
    "'Which figures move with the machine'), while chance, the class-prior ranking, the "
    "dataset statistics and the paper's figures do not; a verdict is only to be trusted when "
    "its interval clears zero by more than that."
)


def claims_text(found: list[ClaimResult]) -> str:
    """The sentences under the claims table: one a claim, the rule, the hardware caveat."""
    return " ".join([*(claim_sentence(r) for r in found), VERDICT_RULE, HARDWARE])


# --- baselines -----------------------------------------------------------------------------


def target_classes(params: Params) -> int | None:
    """Classes of the fine-tuning task (`finetune.task`): its validation records' index,
    else the miniature's."""
    from mlimages.input import records

    try:
        return records.split_index(params.run_dir, params.finetune.splits[1]).num_classes
    except (FileNotFoundError, ValueError):
        if not params.data.uses_miniature:
            return None
        s = params.synth
        return s.novel_classes if params.finetune.task == "novel" else s.target_classes


def chance(k: int, classes: int | None) -> float:
    """Top-k accuracy (%) of a uniform random guess among `classes` (capped at 100)."""
    return math.nan if not classes else min(100.0, 100.0 * k / classes)


def _mean(values: dict[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


def baselines_table(
    results: pd.DataFrame, params: Params, multilabel: pd.DataFrame | None
) -> pd.DataFrame:
    """`baselines.csv`: figure, ours, baseline, baseline_name (percent), a row a figure."""
    rows = multilabel_baselines(multilabel)
    f = params.finetune
    sizes = sorted({f.base_size, f.large_size})
    for size in sizes:
        probe = seed_values(results, 5, size, "top1")
        if probe:  # a missing ckpt 6 leaves the baseline empty (NaN), not the row out
            rows.append(
                {
                    "figure": f"ckpt 5 top-1 @{size} px (ML-Images features, linear probe)",
                    "ours": _mean(probe),
                    "baseline": _mean(seed_values(results, RANDOM_PROBE_CKPT, size, "top1")),
                    "baseline_name": RANDOM_PROBE,
                }
            )
    if "train_top1" in results.columns:
        for size in sizes:
            trained = results[(results["ckpt"] == 1) & (results["img_size"] == size)]
            if trained["train_top1"].notna().any():
                rows.append(
                    {
                        "figure": f"ckpt 1 top-1 @{size} px (validation; target only)",
                        "ours": _mean(seed_values(results, 1, size, "top1")),
                        "baseline": float(trained["train_top1"].mean()),
                        "baseline_name": TRAINING_SET,
                    }
                )
    classes = target_classes(params)
    for ckpt in sorted(int(c) for c in results["ckpt"].unique()):
        for size in sizes:
            for k, metric in ((1, "top1"), (5, "top5")):
                values = seed_values(results, ckpt, size, metric)
                if values:
                    rows.append(
                        {
                            "figure": f"ckpt {ckpt} top-{k} @{size} px",
                            "ours": _mean(values),
                            "baseline": chance(k, classes),
                            "baseline_name": CHANCE,
                        }
                    )
    table = pd.DataFrame(rows, columns=list(BASELINE_COLUMNS))
    return table.round({"ours": 2, "baseline": 2})


def multilabel_baselines(multilabel: pd.DataFrame | None) -> list[dict[str, object]]:
    """The pretrained model's mAP and P/R/F1@k (notebook 06) beside the class prior's."""
    if multilabel is None or not len(multilabel):
        return []
    frame = multilabel.set_index("k")
    rows: list[dict[str, object]] = []

    def add(figure: str, column: str, at: int | None = None) -> None:
        if column not in frame.columns:
            return
        where = frame.index[0] if at is None else at
        prior = f"prior_{column}"
        rows.append(
            {
                "figure": f"pretrained model, validation {figure}",
                "ours": float(frame.loc[where, column]),
                "baseline": float(frame.loc[where, prior]) if prior in frame else math.nan,
                "baseline_name": CLASS_PRIOR,
            }
        )

    add("mAP", "map")
    for k in (k for k in MULTILABEL_KS if k in frame.index):
        for name, short in MULTILABEL_FIGURES:
            add(f"instance {short}@{k}", f"{name}_at_k", k)
    return rows


def read_multilabel(path: Path) -> pd.DataFrame | None:
    """Notebook 06's multilabel.csv (percent), or None where the stage has not run."""
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if "k" not in frame.columns:
        raise ValueError(f"{path}: no column k; expected a row a k (notebook 06's multilabel.csv)")
    return frame


def baselines_display(table: pd.DataFrame) -> pd.DataFrame:
    """The baselines as a reader reads them, with what ours adds over each."""
    out = pd.DataFrame(
        {
            "figure": table["figure"],
            "ours": table["ours"].map(_pct),
            "baseline": table["baseline"].map(_pct),
            "ours - baseline": (table["ours"] - table["baseline"]).map(
                lambda v: "–" if pd.isna(v) else f"{v:+.1f}"
            ),
            "baseline name": table["baseline_name"],
        }
    )
    return out


def _pct(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.1f}"


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 2)
