from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from mlimages.data.taxonomy import DictionaryError, load_dictionary, parse_dictionary

HEADER = "category_index\tcategory_id\tindex_of_parent_category\tcategory name\n"


def test_authors_dictionary_matches_published_hierarchy(shared: Path) -> None:
    taxonomy = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")
    stats = taxonomy.stats()
    assert stats["classes"] == 11_166
    assert stats["roots"] == 4
    assert [taxonomy.names[r] for r in taxonomy.roots] == [
        "thing",
        "matter",
        "object, physical object",
        "atmospheric phenomenon",
    ]
    assert stats["max_depth"] == 16  # the paper's longest path
    assert round(stats["mean_depth"], 2) == 7.47  # the paper's average depth


def test_parent_after_child_is_built_by_traversal(shared: Path) -> None:
    taxonomy = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")
    assert taxonomy.parents[9741] == 10348
    chain = taxonomy.ancestors(9741, include_self=True)
    assert chain[:2] == [9741, 10348] and taxonomy.parents[chain[-1]] == -1
    assert taxonomy.depth[9741] == taxonomy.depth[10348] + 1


def test_ancestor_csr_and_subtree_agree_with_parents() -> None:
    text = HEADER + "0\tn0\t-1\troot\n1\tn1\t3\tleaf\n2\tn2\t-1\tother root\n3\tn3\t0\tmid\n"
    taxonomy = parse_dictionary(text)
    indptr, indices = taxonomy.ancestor_csr()
    assert indices[indptr[1] : indptr[2]].tolist() == [1, 3, 0]
    assert taxonomy.depth.tolist() == [0, 2, 0, 1]
    assert taxonomy.subtree(0).tolist() == [0, 1, 3]
    assert taxonomy.leaves.tolist() == [1, 2]
    assert taxonomy.children(3) == [1]


def test_write_round_trip(tmp_path: Path, shared: Path) -> None:
    taxonomy = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")
    taxonomy.write(tmp_path / "dict.txt")
    again = load_dictionary(tmp_path / "dict.txt")
    assert again.wnids == taxonomy.wnids and again.names == taxonomy.names
    assert np.array_equal(again.parents, taxonomy.parents)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "0\tn0\t-1\troot\n1\tn1\t7\tchild\n",
            r"x\.txt:3: class 1 has parent 7, which is not a class",
        ),
        (
            "0\tn0\t-1\troot\n1\tn1\t2\ta\n2\tn2\t1\tb\n",
            r"x\.txt:3: class 1 never reaches a root .*cycle",
        ),
        (
            "0\tn0\t-1\troot\n0\tn1\t0\tagain\n",
            r"x\.txt:3: duplicate class index 0 \(first defined on line 2\)",
        ),
        (
            "0\tn0\t-1\troot\n1\tn1\tzero\tchild\n",
            r"x\.txt:3: parent index 'zero'; expected an integer",
        ),
        ("0\tn0\t-1\n", r"x\.txt:2: 3 tab-separated fields; expected 4"),
        ("0\tn0\t-1\troot\n2\tn2\t0\tgap\n", r"x\.txt: class index 1 missing"),
    ],
    ids=["missing-parent", "cycle", "duplicate-index", "bad-int", "short-line", "gap"],
)
def test_bad_dictionaries_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "x.txt"
    path.write_text(HEADER + body)
    with pytest.raises(DictionaryError, match=message):
        load_dictionary(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_dictionary(tmp_path / "nope.txt")


def test_dictionary_from_url_is_downloaded_once(shared: Path, tmp_path: Path) -> None:
    """A stand-in for the authors' GitHub URL, served on loopback."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(shared))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/dictionary_and_semantic_hierarchy.txt"
        taxonomy = load_dictionary(url, cache_dir=tmp_path)
        assert taxonomy.num_classes == 11_166
        cached = list(tmp_path.iterdir())
        assert len(cached) == 1 and cached[0].name.endswith("dictionary_and_semantic_hierarchy.txt")
        with pytest.raises(OSError, match="could not download .*missing.txt"):
            load_dictionary(url.replace("dictionary_and_semantic_hierarchy", "missing"), tmp_path)
        server.shutdown()
        server.server_close()
        assert load_dictionary(url, cache_dir=tmp_path).num_classes == 11_166  # from the cache
    finally:
        server.shutdown()
