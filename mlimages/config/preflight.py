"""Check a profile's inputs before any stage starts (`mlimages params check`, `mlimages study`).

A study on real data fails hours in when notebook 05 finds no target task, or when a label
list named in the profile was never downloaded. Every input each stage will read is checked
here, without the network and without TensorFlow: local paths must exist (files as files,
folders as folders), http(s) URLs (dictionaries only) are checked for syntax. Keys a stage
never reads on this profile are not checked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlimages.config import layout
from mlimages.config.params import Params

# Study stages in notebook order; a notebook `NN_*.ipynb` runs stage NOTEBOOK_STAGES[NN].
NOTEBOOK_STAGES = {f"{i:02d}": stage for i, stage in enumerate(layout.STAGES, start=1)}


@dataclass(frozen=True)
class Missing:
    """One input a stage needs that is not there: the stage, the dotted key and why."""

    stage: str
    key: str
    why: str


@dataclass
class Preflight:
    """The outcome of a check: `ok` when nothing is missing."""

    profile: str
    missing: list[Missing] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "missing": [asdict(m) for m in self.missing]}

    def text(self) -> str:
        if self.ok:
            return f"profile {self.profile!r}: every input the stages need is there"
        lines = [f"profile {self.profile!r}: {len(self.missing)} missing input(s)"]
        lines += [f"  [{m.stage}] {m.key}: {m.why}" for m in self.missing]
        return "\n".join(lines)


class PreflightError(ValueError):
    """A profile whose inputs are missing; the message names every one."""


def stages_of(notebook_names: list[str]) -> list[str]:
    """The stages a set of notebooks runs (by their number); every stage if one is unknown."""
    found = [NOTEBOOK_STAGES.get(name[:2]) for name in notebook_names]
    if not found or any(stage is None for stage in found):
        return list(layout.STAGES)
    return [stage for stage in layout.STAGES if stage in found]


def check(params: Params, stages: list[str] | None = None) -> Preflight:
    """Every missing input of `stages` (default: all), each key once, at the first stage
    that reads it."""
    wanted = list(layout.STAGES) if stages is None else list(stages)
    unknown = [s for s in wanted if s not in layout.STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; expected some of {', '.join(layout.STAGES)}")
    result = Preflight(params.profile)
    seen: set[str] = set()
    for stage, key, why in _problems(params):
        if stage in wanted and key not in seen:
            seen.add(key)
            result.missing.append(Missing(stage, key, why))
    return result


def require(params: Params, stages: list[str] | None = None) -> None:
    """Raise `PreflightError` naming every missing input, or return when there is none."""
    result = check(params, stages)
    if not result.ok:
        raise PreflightError(result.text())


def _problems(params: Params) -> list[tuple[str, str, str]]:
    """(stage, key, why) for every problem, stages in order; keys may repeat."""
    data, d, r, f = params.data, params.download, params.records, params.finetune
    found: list[tuple[str, str, str]] = []

    def add(stage: str, key: str, why: str | None) -> None:
        if why is not None:
            found.append((stage, key, why))

    if not data.uses_miniature:
        for stage in (layout.EXPLORE, layout.DOWNLOAD):  # notebook 01 reads no validation list
            if data.dictionary is not None:
                add(stage, "data.dictionary", _dictionary(params, data.dictionary))
            if data.train_list is None:
                add(stage, "data.train_list", "not set; expected the training label list")
            else:
                add(stage, "data.train_list", _local_file(params, data.train_list, "label list"))
        if data.val_list is not None:
            add(layout.DOWNLOAD, "data.val_list", _local_file(params, data.val_list, "label list"))
        if d.file_root is not None:
            add(layout.DOWNLOAD, "download.file_root", _folder(params, d.file_root, "file:// root"))
        if d.imagenet_root is not None:
            add(
                layout.DOWNLOAD,
                "download.imagenet_root",
                _folder(params, d.imagenet_root, "ImageNet tree or folder of <wnid>.tar files"),
            )
    for listed, root in (
        ("target_train_list", "imagenet_train"),
        ("target_val_list", "imagenet_val"),
    ):
        if getattr(d, listed) is None:
            continue
        what = "ImageNet-id-keyed label list"
        add(layout.DOWNLOAD, f"download.{listed}", _local_file(params, getattr(d, listed), what))
        if getattr(d, root) is None:
            why = f"not set; expected the ImageNet tree or tar folder holding download.{listed}"
        else:
            why = _folder(params, getattr(d, root), "ImageNet tree or folder of <wnid>.tar files")
        add(layout.DOWNLOAD, f"download.{root}", why)
    if r.target_dictionary is not None:
        add(
            layout.RECORDS,
            "records.target_dictionary",
            _local_file(params, r.target_dictionary, "target dictionary (one class a line)"),
        )
    own_target = data.uses_miniature and d.target_train_list is None
    if not own_target:
        task = "fine-tuning (notebook 05) needs a target task"
        if d.target_train_list is None:
            add(
                layout.FINETUNE,
                "download.target_train_list",
                f"not set; {task}: an ImageNet-id-keyed training list (with "
                "download.imagenet_train and records.target_dictionary)",
            )
        if d.target_val_list is None:
            add(
                layout.FINETUNE,
                "download.target_val_list",
                f"not set; {task}: an ImageNet-id-keyed validation list (with "
                "download.imagenet_val)",
            )
        if r.target_dictionary is None:
            add(
                layout.FINETUNE,
                "records.target_dictionary",
                f"not set; {task}: its classes, one a line",
            )
    if f.init_checkpoint is not None and any(c.pretrained for c in f.checkpoints):
        add(layout.FINETUNE, "finetune.init_checkpoint", _checkpoint(params, f.init_checkpoint))
    return found


def _is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def _url_problem(text: str) -> str | None:
    parsed = urlparse(text)
    if not parsed.netloc or not parsed.path.strip("/"):
        return f"{text!r} is not a valid http(s) URL; expected http(s)://host/path"
    return None


def _dictionary(params: Params, value: str) -> str | None:
    """A dictionary may be a URL (fetched once into the cache): its syntax only is checked."""
    if _is_url(value):
        return _url_problem(value)
    return _local_file(params, value, "dictionary")


def _local_file(params: Params, value: str, what: str) -> str | None:
    if "://" in value:
        return f"{value!r} is a URL; expected a local {what} file (download it first)"
    path = params.resolve_path(value)
    if path.is_file():
        return None
    state = "is a folder" if path.is_dir() else "does not exist"
    return f"{path} {state}; expected the {what} file"


def _folder(params: Params, value: str, what: str) -> str | None:
    path = params.resolve_path(value)
    if path.is_dir():
        return None
    state = "is a file" if path.exists() else "does not exist"
    return f"{path} {state}; expected a folder: the {what}"


def _checkpoint(params: Params, value: str) -> str | None:
    """A `.keras` file, a TF1 prefix (`<prefix>.index` beside it) or a folder whose
    `checkpoint` state file names one (mlimages.train.finetune.init_source)."""
    path = params.resolve_path(value)
    expected = (
        "expected a .keras file, an authors'-format TF1 checkpoint prefix (with <prefix>.index) "
        "or a folder with a `checkpoint` state file"
    )
    if path.suffix == ".keras":
        return None if path.is_file() else f"{path} does not exist; {expected}"
    if path.is_dir():
        return (
            None
            if (path / "checkpoint").is_file()
            else f"{path} has no `checkpoint` file; {expected}"
        )
    if Path(f"{path}.index").is_file():
        return None
    return f"{path} does not exist ({path}.index not found either); {expected}"
