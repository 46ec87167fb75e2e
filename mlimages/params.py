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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from mlimages.atomic import write_text_atomic

PARAMS_DIR_ENV = "MLIMAGES_PARAMS_DIR"
RUNS_DIR_ENV = "MLIMAGES_RUNS"


class ParamsError(ValueError):
    """Bad parameters; the message names the file or override and the dotted key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, frozen=True)


class DataParams(StrictModel):
    """Where the label lists and the hierarchy come from; all None means the miniature."""

    dictionary: str | None = Field(None, description="path or http(s) URL of the dictionary")
    train_list: str | None = Field(None, description="training label list (any key kind)")
    val_list: str | None = Field(None, description="validation label list")
    num_classes: int | None = Field(None, ge=1, description="checked against label indices")

    @property
    def uses_miniature(self) -> bool:
        return self.dictionary is None and self.train_list is None


class SynthParams(StrictModel):
    """The embedded mini ML-Images (DESIGN §5); sizes chosen for a 2-core laptop."""

    seed: int = 0
    num_train: int = Field(4000, ge=1)
    num_val: int = Field(800, ge=1)
    image_size: int = Field(64, ge=16, le=1024, description="side of the generated originals")
    max_objects: int = Field(3, ge=1, le=8)
    label_noise: float = Field(
        0.05, ge=0.0, le=1.0, description="share of images with a wrong or missing leaf label"
    )
    unclosed_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="share of images listed without ancestors, as in the published lists",
    )
    target_classes: int = Field(10, ge=2)
    target_train_per_class: int = Field(10, ge=1)
    target_val_per_class: int = Field(30, ge=1)
    jpeg_quality: int = Field(90, ge=50, le=100)


class ExploreParams(StrictModel):
    """Notebook 01."""

    close: bool = Field(True, description="close labels over ancestors before counting")
    top_classes: int = Field(20, ge=2, le=200, description="classes in the co-occurrence heatmap")
    progress: bool | None = None


class Params(StrictModel):
    """One profile, resolved."""

    profile: str
    seed: int = 0
    runs_dir: str = "runs"
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    explore: ExploreParams = ExploreParams()

    _root: Path = PrivateAttr(default_factory=Path.cwd)

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
        return self.resolve_path(base) / self.profile

    def stage_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

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
    candidates.append(Path(__file__).resolve().parent.parent / "params")
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
        if error["type"] == "extra_forbidden":
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
