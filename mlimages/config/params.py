"""Typed, strict parameters: model defaults, then a profile file, then overrides.

Papermill only warns about a mistyped parameter; a reproduction that silently ignores
`num_trian: 10` is worse than one that stops, so every level refuses unknown keys and wrong
types with the key's dotted name and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from mlimages.config.sections import (
    DataParams,
    DownloadParams,
    EvaluateParams,
    ExploreParams,
    PipelineParams,
    PlanParams,
    RecordsParams,
    ReportParams,
    StrictModel,
    SubsetParams,
    SynthParams,
)
from mlimages.config.training import (
    ExperimentsParams,
    FinetuneParams,
    LossParams,
    ModelParams,
    PretrainParams,
    ScheduleParams,
)
from mlimages.core.atomic import write_text_atomic

PARAMS_DIR_ENV = "MLIMAGES_PARAMS_DIR"
RUNS_DIR_ENV = "MLIMAGES_RUNS"


class ParamsError(ValueError):
    """Bad parameters; the message names the file or override and the dotted key."""


class Params(StrictModel):
    """One profile, resolved."""

    profile: str
    seed: int = 0
    runs_dir: str = "runs"
    run_name: str | None = Field(
        None, description="the run folder under runs_dir; None: the profile's name (sweeps set it)"
    )
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    explore: ExploreParams = ExploreParams()
    subset: SubsetParams = SubsetParams()
    download: DownloadParams = DownloadParams()
    pretrain: PretrainParams = PretrainParams()
    model: ModelParams = ModelParams()
    loss: LossParams = LossParams()
    schedule: ScheduleParams = ScheduleParams()
    records: RecordsParams = RecordsParams()
    pipeline: PipelineParams = PipelineParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    plan: PlanParams = PlanParams()
    experiments: ExperimentsParams = ExperimentsParams()

    _root: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _no_ignored_keys(self) -> Params:
        """A key no stage would read is refused: silence would report a run that ignored it."""
        d, data, r = self.download, self.data, self.records
        problems = []
        if data.uses_miniature:
            for key in ("val_list", "num_classes"):
                if getattr(data, key) is not None:
                    problems.append(
                        f"data.{key} is set but data.train_list and data.dictionary are not, so "
                        "the miniature is used and it would be ignored; expected both or neither"
                    )
            if d.imagenet_root is not None:
                problems.append(
                    "download.imagenet_root is set, but the miniature's training list has no "
                    "ImageNet ids; expected it only with a real data.train_list"
                )
        if d.target_val_list is not None and d.target_train_list is None:
            problems.append("download.target_val_list is set without download.target_train_list")
        for listed, root in (
            ("target_train_list", "imagenet_train"),
            ("target_val_list", "imagenet_val"),
        ):
            if getattr(d, root) is not None and getattr(d, listed) is None:
                problems.append(f"download.{root} is set without download.{listed}, its list")
        if (r.target_dictionary is None) != (d.target_train_list is None):
            problems.append(
                "download.target_train_list and records.target_dictionary go together (a target "
                "task needs its classes; on the miniature both replace its own target task); "
                "expected both or neither"
            )
        for key, used in (
            ("pretrain.hold_out_novel: true", self.pretrain.hold_out_novel),
            ("finetune.task: novel", self.finetune.task == "novel"),
        ):
            if not used:
                continue
            if not data.uses_miniature:
                problems.append(
                    f"{key} asks for the novel classes, but data.train_list or data.dictionary "
                    "is set and only the miniature has novel classes; expected the miniature"
                )
            elif self.synth.novel_classes == 0:
                problems.append(
                    f"{key} asks for the novel classes, but synth.novel_classes is 0; expected "
                    "synth.novel_classes >= 1"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def root(self) -> Path:
        """Directory that relative paths in the profile are relative to (the project root)."""
        return self._root

    def resolve_path(self, path: str | os.PathLike) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._root / p

    @property
    def run_dir(self) -> Path:
        base = os.environ.get(RUNS_DIR_ENV) or self.runs_dir
        return self.resolve_path(base) / (self.run_name or self.profile)

    @property
    def subset_seed(self) -> int:
        """The subset's seed: its own, else the profile's."""
        return self.seed if self.subset.seed is None else self.subset.seed

    @property
    def records_seed(self) -> int:
        """The record order's seed: its own, else the profile's."""
        return self.seed if self.records.seed is None else self.records.seed

    def stage_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def to_yaml(self) -> str:
        """Paths made absolute, so a saved params.yaml is itself a profile that loads anywhere."""
        dump = self.model_dump(mode="json")
        dump["runs_dir"] = str(self.resolve_path(self.runs_dir))
        # Only the loss keys its kind reads: a saved file that set the others would be refused.
        dump["loss"] = {key: dump["loss"][key] for key in self.loss.keys_read()}
        for key in ("dictionary", "train_list", "val_list"):
            value = dump["data"][key]
            if value is not None and "://" not in value:
                dump["data"][key] = str(self.resolve_path(value))
        return yaml.safe_dump(dump, sort_keys=False)

    def write(self, path: str | os.PathLike) -> Path:
        """Save the resolved parameters next to an artefact (write, then rename)."""
        return write_text_atomic(path, self.to_yaml())


def find_profile(name_or_path: str | os.PathLike) -> Path:
    """A YAML path as given, or `params/<name>.yaml` looked up from here upwards."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ParamsError(f"profile file not found: {path}")
        return path.resolve()
    candidates: list[Path] = []
    if os.environ.get(PARAMS_DIR_ENV):
        candidates.append(Path(os.environ[PARAMS_DIR_ENV]))
    here = Path.cwd().resolve()
    candidates += [d / "params" for d in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[2] / "params")
    for directory in candidates:
        path = directory / f"{text}.yaml"
        if path.is_file():
            return path.resolve()
    known = sorted({p.stem for d in candidates if d.is_dir() for p in d.glob("*.yaml")})
    raise ParamsError(
        f"unknown profile {text!r}; expected one of: {', '.join(known) or '(none found)'}"
    )


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value`, read as YAML so that `3`, `0.5`, `true`, `null` keep their types."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {text!r}; expected the form section.key=value")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ParamsError(f"override {text!r}: value is not valid YAML ({exc})") from None


def load_params(
    profile: str | os.PathLike,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Params:
    """Resolve a profile: model defaults, then the profile file, then dotted overrides."""
    path = find_profile(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    raw.setdefault("profile", path.stem)
    root = path.parent.parent
    _validate(raw, str(path), root)
    if overrides:
        items = (
            [parse_override(o) for o in overrides]
            if isinstance(overrides, list)
            else list(overrides.items())
        )
        for key, value in items:
            _set_dotted(raw, key, value)
        return _validate(raw, f"{path} with overrides {dict(items)}", root)
    return _validate(raw, str(path), root)


def _validate(raw: dict[str, Any], where: str, root: Path) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_describe(exc, where)) from None
    params._root = root
    return params


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = raw
    for i, section in enumerate(sections):
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ParamsError(f"override {key!r}: {'.'.join(sections[: i + 1])} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid parameters"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if not key:  # a rule across sections: its message names the keys
            lines.append("  " + error["msg"].removeprefix("Value error, "))
        elif error["type"] == "value_error" and isinstance(error.get("input"), dict):
            # A rule across a section's keys (a model validator): its message names them.
            lines.append(f"  key {key!r}: " + error["msg"].removeprefix("Value error, "))
        elif error["type"] == "extra_forbidden":
            expected = _known_keys(error["loc"][:-1])
            lines.append(f"  key {key!r}: unknown key; expected one of: {', '.join(expected)}")
        else:
            got = error.get("input")
            expected = error["msg"].lower().removeprefix("input should be ")
            lines.append(f"  key {key!r}: got {got!r} ({type(got).__name__}); expected {expected}")
    return "\n".join(lines)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
