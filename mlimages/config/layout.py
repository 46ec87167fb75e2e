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
METRICS_FILE = "metrics.json"  # a stage's (or a training run's) summary, read by later stages
RESULTS_FILE = "results.csv"  # finetune/ckpt<N>/: one row a (seed, evaluation size)

# A training run's folder (pretrain/, finetune/ckpt<N>/seed<S>/)
MODEL_FILE = "model.keras"  # the finished run's model: what later stages load
CHECKPOINTS_DIR = "ckpt"  # the resumable state
LOG_FILE = "log.jsonl"  # one JSON object a logged step
INIT_FILE = "init.json"  # how a fine-tuning run's weights were initialised
EVAL_FILE = "eval.json"  # a fine-tuning run's final evaluation
TRAINING_ARTEFACTS = (CHECKPOINTS_DIR, MODEL_FILE, LOG_FILE, METRICS_FILE, INIT_FILE, EVAL_FILE)


def ckpt_folder(ckpt: int) -> str:
    """finetune/ckpt<N>/: a checkpoint's fine-tuning runs and its results table."""
    return f"ckpt{ckpt}"


def seed_folder(seed: int) -> str:
    """finetune/ckpt<N>/seed<S>/: one fine-tuning run."""
    return f"seed{seed}"


CKPT_FOLDERS, SEED_FOLDERS = ckpt_folder("*"), seed_folder("*")  # their glob patterns
RESULTS_FILES = f"{CKPT_FOLDERS}/{RESULTS_FILE}"  # every checkpoint's table, under finetune/


def miniature_dir(run_dir: Path) -> Path:
    """Where a run generates the miniature (`mlimages synth`'s default folder)."""
    return run_dir / DATA / MINIATURE
