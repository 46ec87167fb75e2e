"""A run's layout: the stage folders under `runs/<profile>/` and the names of the files that
one stage writes and others read. Every module names them from here, so that a writer and
its readers cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

EXPLORE = "explore"
DOWNLOAD = "download"
RECORDS = "records"
PRETRAIN = "pretrain"
FINETUNE = "finetune"
EVALUATE = "evaluate"
REPORT = "report"
EXPERIMENTS = "experiments"
STAGES = (EXPLORE, DOWNLOAD, RECORDS, PRETRAIN, FINETUNE, EVALUATE, REPORT)  # notebook order

DATA = "data"  # what the run generates for itself: the miniature
MINIATURE = "mini"

PARAMS_FILE = "params.yaml"  # the resolved parameters beside a stage's artefacts
MODEL_FILE = "model.keras"  # a finished training run's model: what later stages load
RESULTS_FILE = "results.csv"  # finetune/ckpt<N>/: one row a (seed, evaluation size)


def miniature_dir(run_dir: Path) -> Path:
    """Where a run generates the miniature (`mlimages synth`'s default folder)."""
    return run_dir / DATA / MINIATURE
