"""How a class of the miniature looks: one visual attribute per branching level of its path.

A dog breed shares a dog's shape; the miniature makes that literal so that what a network
learns about a parent helps with its children. Walking down from a root, every
class with two or more children hands each child a value of the next unused attribute (in
the order below) that has enough values for all of them; when none has, it combines the
largest unused ones. Siblings therefore differ in the attribute of their level, relatives
agree on every attribute above it, a chain of single children inherits its parent's look,
and an attribute no level of the path used keeps its first value. Sizes are chosen so that
every attribute stays visible when a 96-px original is resized to 72 px and the object
covers 30-55% of the side (stripes 4-7 px, borders 2 px there).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mlimages.data.taxonomy import Taxonomy

SHAPES = ("disc", "square", "triangle", "diamond", "hexagon", "star", "cross", "house")
LAYOUTS = ("none", "knob", "ears", "legs", "fins", "tail")
TEXTURES = ("plain", "hstripes", "vstripes", "diagonal", "dots", "checks")
MAIN_COLOURS = (
    (220, 40, 40), (40, 160, 60), (40, 80, 220), (240, 210, 40),
    (200, 50, 200), (40, 200, 210), (245, 130, 30), (120, 60, 190),
)  # fmt: skip
TRIM_COLOURS = (
    (250, 250, 250), (20, 20, 20), (110, 70, 30), (255, 170, 200), (20, 90, 40), (150, 150, 150),
)  # fmt: skip
ASPECTS = ("square", "wide", "tall")
MARKS = ("none", "dot", "ring")
SCALES = ("coarse", "fine")
SHADES = ("bright", "dark")
OUTLINES = ("thin", "thick")
# In the order the levels of a path take them: the coarsest cues first.
ATTRIBUTES: tuple[tuple[str, int], ...] = (
    ("shape", len(SHAPES)),
    ("layout", len(LAYOUTS)),
    ("texture", len(TEXTURES)),
    ("colour", len(MAIN_COLOURS)),
    ("trim", len(TRIM_COLOURS)),
    ("aspect", len(ASPECTS)),
    ("mark", len(MARKS)),
    ("scale", len(SCALES)),
    ("shade", len(SHADES)),
    ("outline", len(OUTLINES)),
)
SPRITE = 64  # side of the canonical drawing; instances are resized from it


@dataclass(frozen=True)
class Look:
    """Attribute values of one class (indices into the tables above)."""

    shape: int = 0
    layout: int = 0
    texture: int = 0
    colour: int = 0
    trim: int = 0
    aspect: int = 0
    mark: int = 0
    scale: int = 0
    shade: int = 0
    outline: int = 0


def looks(taxonomy: Taxonomy) -> list[Look]:
    """Every class's look, composed down its path (see the module docstring)."""
    plan = _plan(taxonomy)
    values: list[dict[str, int]] = [{} for _ in range(taxonomy.num_classes)]
    stack = [int(r) for r in taxonomy.roots]
    while stack:
        node = stack.pop()
        children = taxonomy.children(node)
        for k, child in enumerate(children):
            values[child] = {**values[node], **_digits(k, plan.get(node, ()))}
        stack.extend(children)
    return [Look(**v) for v in values]


def _plan(taxonomy: Taxonomy) -> dict[int, tuple[tuple[str, int], ...]]:
    """Attributes each branching class hands its children: the first option (in preference
    order) that leaves every path below enough attributes, found by memoised backtracking."""

    @cache
    def solve(node: int, used: frozenset[str]) -> tuple | None:
        children = taxonomy.children(node)
        options = _options(len(children), used) if len(children) > 1 else [()]
        for attrs in options:
            below = used | {a for a, _ in attrs}
            parts = [solve(c, below) for c in children]
            if all(p is not None for p in parts):
                return ((node, attrs),) + tuple(x for p in parts for x in p)
        return None

    plan: dict[int, tuple[tuple[str, int], ...]] = {}
    for root in taxonomy.roots:
        found = solve(int(root), frozenset())
        if found is None:
            raise ValueError(
                f"{taxonomy.source}: the paths under {taxonomy.wnids[root]} branch more often "
                f"than {len(ATTRIBUTES)} attributes can tell apart; expected fewer branching levels"
            )
        plan.update((n, a) for n, a in found if a)
    return plan


def _options(siblings: int, used: frozenset[str]) -> list[tuple[tuple[str, int], ...]]:
    """Single attributes with a value for every sibling, in order; then pairs, then triples."""
    free = [(a, n) for a, n in ATTRIBUTES if a not in used]
    out = [((a, n),) for a, n in free if n >= siblings]
    for size in (2, 3):
        out += [
            combo
            for combo in itertools.combinations(free, size)
            if math.prod(n for _, n in combo) >= siblings
        ]
    return out


def _digits(k: int, attrs: list[tuple[str, int]]) -> dict[str, int]:
    """Sibling k's values of the attributes, as mixed-radix digits."""
    out = {}
    for a, n in attrs:
        out[a] = k % n
        k //= n
    return out


@lru_cache(maxsize=4096)
def sprite(look: Look) -> Image.Image:
    """The class's drawing, RGBA, SPRITE px square, transparent around it."""
    s = SPRITE
    body = _body_mask(look)
    parts = _parts_mask(look, body)
    width = 5 if OUTLINES[look.outline] == "thin" else 9
    inner = (
        np.asarray(
            Image.fromarray(body.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(width))
        )
        > 0
    )
    pattern = _texture(look.texture, 12 if SCALES[look.scale] == "coarse" else 7)
    factor = 1.0 if SHADES[look.shade] == "bright" else 0.55
    main = (np.array(MAIN_COLOURS[look.colour]) * factor).astype(np.uint8)
    trim = np.array(TRIM_COLOURS[look.trim], dtype=np.uint8)
    rgb = np.zeros((s, s, 3), dtype=np.uint8)
    rgb[body] = main
    rgb[body & pattern] = trim
    rgb[(body & ~inner) | parts] = trim
    _mark(rgb, look)
    alpha = ((body | parts) * 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _box(look: Look) -> tuple[float, float, float, float]:
    """The body's box inside the canvas, leaving room for the parts around it."""
    aspect = ASPECTS[look.aspect]
    if aspect == "wide":
        return (8, 18, 56, 46)
    if aspect == "tall":
        return (18, 10, 46, 54)
    return (12, 12, 52, 52)


def _body_mask(look: Look) -> np.ndarray:
    image = Image.new("L", (SPRITE, SPRITE), 0)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = _box(look)
    w, h, cx, cy = x1 - x0, y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2
    shape = SHAPES[look.shape]
    if shape == "disc":
        draw.ellipse((x0, y0, x1, y1), fill=1)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=1)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=1)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=1)
    elif shape == "hexagon":
        q = w / 4
        draw.polygon(
            [(x0 + q, y0), (x1 - q, y0), (x1, cy), (x1 - q, y1), (x0 + q, y1), (x0, cy)], 1
        )
    elif shape == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = [
            (cx + r * w / 2 * np.cos(a), cy + r * h / 2 * np.sin(a))
            for a, r in zip(angles, radius, strict=True)
        ]
        draw.polygon(points, fill=1)
    elif shape == "cross":
        draw.rectangle((x0 + w / 3, y0, x1 - w / 3, y1), fill=1)
        draw.rectangle((x0, y0 + h / 3, x1, y1 - h / 3), fill=1)
    else:  # house: a square body under a roof
        draw.rectangle((x0, y0 + h * 0.4, x1, y1), fill=1)
        draw.polygon([(x0, y0 + h * 0.4), (cx, y0), (x1, y0 + h * 0.4)], fill=1)
    return np.asarray(image) > 0


def _parts_mask(look: Look, body: np.ndarray) -> np.ndarray:
    """Appendages outside the body, drawn in the trim colour."""
    image = Image.new("L", (SPRITE, SPRITE), 0)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = _box(look)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    layout = LAYOUTS[look.layout]
    if layout == "knob":
        draw.ellipse((cx - 6, y0 - 9, cx + 6, y0 + 3), fill=1)
    elif layout == "ears":
        for ex in (x0 + 6, x1 - 6):
            draw.polygon([(ex - 6, y0 + 4), (ex + 6, y0 + 4), (ex, y0 - 9)], fill=1)
    elif layout == "legs":
        for lx in (x0 + 8, x1 - 12):
            draw.rectangle((lx, y1 - 2, lx + 5, min(y1 + 9, SPRITE - 1)), fill=1)
    elif layout == "fins":
        draw.polygon([(x0 + 3, cy - 7), (x0 + 3, cy + 7), (max(x0 - 8, 0), cy)], fill=1)
        draw.polygon([(x1 - 3, cy - 7), (x1 - 3, cy + 7), (min(x1 + 8, SPRITE - 1), cy)], fill=1)
    elif layout == "tail":
        draw.polygon([(x1 - 3, cy - 3), (min(x1 + 9, SPRITE - 1), cy - 10), (x1 + 4, cy + 4)], 1)
    return (np.asarray(image) > 0) & ~body


@lru_cache(maxsize=32)
def _texture(texture: int, period: int) -> np.ndarray:
    y, x = np.mgrid[0:SPRITE, 0:SPRITE]
    half = period // 2
    name = TEXTURES[texture]
    if name == "hstripes":
        return y % period < half
    if name == "vstripes":
        return x % period < half
    if name == "diagonal":
        return (x + y) % period < half
    if name == "dots":
        dy, dx = y % period - period / 2, x % period - period / 2
        return dy * dy + dx * dx <= (period / 3.2) ** 2
    if name == "checks":
        return ((x // half) + (y // half)) % 2 == 0
    return np.zeros((SPRITE, SPRITE), dtype=bool)


def _mark(rgb: np.ndarray, look: Look) -> None:
    """A centre mark: none, a white dot or a black ring."""
    mark = MARKS[look.mark]
    if mark == "none":
        return
    x0, y0, x1, y1 = _box(look)
    cx, cy = (
        (x0 + x1) / 2,
        (y0 + y1) / 2 + (6 if SHAPES[look.shape] in ("triangle", "house") else 0),
    )
    y, x = np.mgrid[0:SPRITE, 0:SPRITE]
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    if mark == "dot":
        rgb[r2 <= 6**2] = (255, 255, 255)
    else:
        rgb[(r2 <= 8**2) & (r2 >= 4.5**2)] = (0, 0, 0)
