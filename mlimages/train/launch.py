"""Training stages as `python -m mlimages <verb>` subprocesses that a notebook follows.

A notebook kernel must not train: its TensorFlow could not be reconfigured for a cluster,
and a crash would take the kernel down. The verb's stdout is its JSON result; its stderr
goes to `launch.log` in the run folder, whose tail is shown when the run fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlimages.core.progress import quiet, tqdm

LOG_NAME = "launch.log"


def verb_command(
    verb: str, profile: str | Path, overrides: dict[str, Any], *extra: str
) -> list[str]:
    """`mlimages VERB` arguments that reproduce a resolved notebook or CLI call."""
    argv = [verb, "--params", str(profile), *extra, "--json"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: types survive
    return argv


def start(argv: list[str], log_dir: Path) -> subprocess.Popen:
    """Start `python -m mlimages ARGV`; stdout is piped, stderr goes to log_dir/launch.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / LOG_NAME, "w")  # noqa: SIM115 (the child owns it until it exits)
    return subprocess.Popen(
        [sys.executable, "-m", "mlimages", *argv], stdout=subprocess.PIPE, stderr=log, text=True
    )


def follow(
    process: subprocess.Popen,
    log_dir: Path,
    total_steps: int,
    steps_done: Callable[[], int],
    what: str,
    progress: bool | None = None,
) -> dict[str, Any]:
    """A progress bar until the run ends; its JSON result, or an error with its log's tail."""
    bar = tqdm(total=total_steps, desc=what, unit="step", disable=quiet(progress))
    while process.poll() is None:
        bar.n = steps_done()
        bar.refresh()
        time.sleep(1.0)
    stdout = process.stdout.read() if process.stdout else ""
    bar.n = steps_done()
    bar.close()
    if process.returncode != 0:
        tail = (log_dir / LOG_NAME).read_text()[-3000:]
        raise RuntimeError(f"{what} failed (exit {process.returncode}); log tail:\n{tail}")
    return json.loads(stdout[stdout.index("{") :])
