"""The miniature's classes: a real sub-forest of the authors' dictionary, chosen by rule.

The adaptive loss and the ancestor closure only act as at scale on several hundred classes
with deep paths, so the miniature takes a fixed list of diverse subtrees (dogs,
birds, fish, flowers, trees, vehicles, boats, tools, buildings, …), a few leaves of each spread
evenly over the subtree's leaves in the authors' index order, and closes them over their
ancestors. The result is vendored as `mlimages/data/mini_forest.tsv` in the authors'
dictionary format (copied from Tencent/tencent-ml-images, CC BY 4.0, Tencent; see the NOTICE
beside it), so a clone with nothing beside it still has the classes; `derive` rebuilds it
from the full dictionary and the tests check that both agree.

Run `python -m mlimages.data.miniforest DICTIONARY` to rewrite the vendored file.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from mlimages.data.taxonomy import Taxonomy, load_dictionary, parse_dictionary

# (anchor wnid, leaves taken from its subtree). Anchors are the top-level object groups;
# their order is the order the target task draws its classes from, round robin.
ANCHORS: tuple[tuple[str, int], ...] = (
    ("n02084071", 22),  # dog, domestic dog
    ("n01503061", 20),  # bird
    ("n02512053", 14),  # fish
    ("n02159955", 14),  # insect
    ("n02121620", 6),  # cat, true cat
    ("n01726692", 6),  # snake
    ("n11669921", 20),  # flower
    ("n13104059", 14),  # tree
    ("n13134947", 10),  # fruit
    ("n02958343", 12),  # car, automobile
    ("n02858304", 10),  # boat
    ("n04194289", 8),  # ship
    ("n02686568", 8),  # aircraft
    ("n04490091", 6),  # truck
    ("n02778669", 12),  # ball
    ("n03489162", 12),  # hand tool
    ("n02913152", 14),  # building
    ("n03800933", 10),  # musical instrument
    ("n03497657", 6),  # hat
    ("n03001627", 6),  # chair
)
# Leaves always kept (older tests and examples name them).
REQUIRED_LEAVES: tuple[str, ...] = ("n04254680",)  # soccer ball
# Scene backgrounds, labelled like the authors' `matter` classes.
BACKGROUNDS: tuple[str, ...] = ("n09436708", "n15019030", "n07935504")  # sky, sand, water
VENDORED = "mini_forest.tsv"


def derive(full: Taxonomy) -> Taxonomy:
    """The sub-forest: chosen leaves and backgrounds closed over ancestors, in the authors'
    index order (so `water` still precedes its parent `fluid`, as 9741 precedes 10348)."""
    keep: set[int] = set()
    for wnid in (*chosen_leaves(full), *REQUIRED_LEAVES, *BACKGROUNDS):
        keep.update(full.ancestors(_index(full, wnid), include_self=True))
    old = np.array(sorted(keep))
    new_of = {int(o): n for n, o in enumerate(old)}
    records = [
        (full.wnids[o], full.names[o], new_of[int(full.parents[o])] if full.parents[o] >= 0 else -1)
        for o in old
    ]
    return Taxonomy.from_records(records, source=f"mini ML-Images forest of {full.source}")


def chosen_leaves(full: Taxonomy) -> list[str]:
    """`k` leaves of each anchor, evenly spaced over its leaves in index order."""
    leaves = np.zeros(full.num_classes, dtype=bool)
    leaves[full.leaves] = True
    out: list[str] = []
    for wnid, k in ANCHORS:
        sub = full.subtree(_index(full, wnid))
        candidates = sub[leaves[sub]]
        picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, k)).astype(int))
        out += [full.wnids[i] for i in candidates[picks]]
    return out


@lru_cache(maxsize=1)
def mini_forest() -> Taxonomy:
    """The vendored sub-forest (package data), parsed once."""
    text = resources.files("mlimages.data").joinpath(VENDORED).read_text(encoding="utf-8")
    return parse_dictionary(text, source=f"mlimages/data/{VENDORED}")


def anchor_of(taxonomy: Taxonomy) -> np.ndarray:
    """Per class, the position of its anchor in ANCHORS (-1 outside every anchor)."""
    out = np.full(taxonomy.num_classes, -1, dtype=np.int32)
    for a, (wnid, _) in enumerate(ANCHORS):
        out[taxonomy.subtree(taxonomy.index_of_wnid[wnid])] = a
    return out


def _index(full: Taxonomy, wnid: str) -> int:
    try:
        return full.index_of_wnid[wnid]
    except KeyError:
        raise KeyError(
            f"{wnid}: not in the dictionary {full.source}; expected a class of it"
        ) from None


def main(argv: list[str]) -> int:
    """Rewrite the vendored file from the authors' dictionary (a path or URL)."""
    if len(argv) != 1:
        print("usage: python -m mlimages.data.miniforest DICTIONARY", file=sys.stderr)
        return 2
    out = Path(__file__).with_name(VENDORED)
    derive(load_dictionary(argv[0])).write(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
