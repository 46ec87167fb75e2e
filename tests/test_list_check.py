"""`annotations check`: every planted fault found with its line numbers, in one pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlimages.cli import main
from mlimages.data.labels.check import check_list
from mlimages.data.labels.read import read_label_list
from mlimages.data.taxonomy import Taxonomy

# 0 -> 1 -> 2, 3 -> 4
TAXONOMY = Taxonomy.from_records(
    [("n0", "a", -1), ("n1", "b", 0), ("n2", "c", 1), ("n3", "d", -1), ("n4", "e", 3)]
)
PLANTED = b"".join(
    [
        b"http://x/1.jpg\t0:1\t1:0.9\n",  # 1 clean, closed
        b"http://x/dup.jpg\t3:1\n",  # 2 duplicated below (lines 6 and 9)
        b"http://x/3.jpg\t0:1.5\t3:1\n",  # 3 confidence above 1
        b"http://x/4.jpg\tx:1\t3\n",  # 4 index not a number
        b"n01234567/n01234567_5.JPEG\t7:1\t3:1\n",  # 5 index 7 outside 0..4
        b"http://x/dup.jpg\t3:0.5\n",  # 6 duplicate of line 2
        b"6.jpg\t3:1\t3:0.5\n",  # 7 class 3 twice
        b"7.jpg\t2:1\t0:1\n",  # 8 class 2 without its parent 1
        b"http://x/dup.jpg\t3:nan\n",  # 9 duplicate again, confidence nan
        b" 10.jpg\t3:1\n",  # 10 leading whitespace: no key
        b"\n",  # 11 blank
        b"\xff\xfe.jpg\t3:1\n",  # 12 key not UTF-8
        b"http://x/13.jpg\t99999999999:1\t4:-0.1\n",  # 13 past int32; negative confidence
        b"http://x/14.jpg\t4:1\t3:1e-1",  # 14 clean, no final newline
    ]
)


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    path = tmp_path / "planted.txt"
    path.write_bytes(PLANTED)
    return path


def lines_of(fault) -> list[int]:
    return [x["line"] for x in fault.examples]


def test_every_planted_fault_is_found_with_its_lines(planted: Path) -> None:
    report = check_list(planted, TAXONOMY, published=14)
    f = report.faults
    assert lines_of(f["bad_confidence"]) == [3, 9, 13] and f["bad_confidence"].count == 3
    assert "bad confidence '1.5'" in f["bad_confidence"].examples[0]["message"]
    assert lines_of(f["bad_index"]) == [4]
    assert lines_of(f["index_out_of_range"]) == [5, 13]
    assert (
        "class index 7 out of range; expected 0..4"
        in f["index_out_of_range"].examples[0]["message"]
    )
    assert lines_of(f["bad_key"]) == [10, 12]
    assert f["duplicate_keys"].count == 1 and f["duplicate_keys"].lines == 3
    assert f["duplicate_keys"].examples == [
        {"key": "http://x/dup.jpg", "lines": [2, 6], "occurrences": 3}
    ]
    assert f["repeated_class"].examples == [{"line": 7, "class": 3}]
    assert report.not_closed is not None and report.not_closed.examples == [
        {"line": 8, "class": 2, "missing_parent": 1}
    ]
    assert (report.lines, report.rows, report.nonblank_lines) == (14, 11, 13)
    assert report.keys == 9 and report.published_difference == -1
    assert report.key_kinds == {
        "file": {"keys": 2, "classes_used": 3},
        "url": {"keys": 8, "classes_used": 4},  # 0, 1, 3, 4
        "imagenet": {"keys": 1, "classes_used": 1},
    }
    assert not report.clean


def test_faults_deep_in_a_large_list_keep_their_line_numbers(tmp_path: Path) -> None:
    """Chunks the fast path hands over are re-read in pieces: lines must still be exact."""
    lines = [f"http://x/{i}.jpg\t{i % 3}:1\t3:0.9\n" for i in range(6000)]
    lines[2500] = "\n"  # a blank line in a clean piece
    lines[3000] = "http://x/3000.jpg\t1:2\n"
    lines[5998] = "http://x/7.jpg\t0\n"  # a duplicate of line 8
    path = tmp_path / "large.txt"
    path.write_text("".join(lines))
    report = check_list(path, TAXONOMY)
    assert lines_of(report.faults["bad_confidence"]) == [3001]
    assert report.faults["duplicate_keys"].examples[0]["lines"] == [8, 5999]
    closed = report.not_closed
    assert closed is not None and 2 in {x["class"] for x in closed.examples}
    assert report.rows == 5999 and report.lines == 6000


def test_the_authors_tiny_lists_are_clean(shared: Path) -> None:
    from mlimages.data.taxonomy import load_dictionary

    taxonomy = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")
    report = check_list(shared / "train_urls_tiny.txt", taxonomy, published=100)
    assert report.clean and report.published_difference == 0
    assert (report.rows, report.keys) == (100, 100)
    assert report.rows == len(read_label_list(shared / "train_urls_tiny.txt"))
    assert list(report.key_kinds) == ["url"]
    assert report.not_closed is not None and report.not_closed.lines > 0  # the published lists
    closed = check_list(shared / "train_urls_tiny.txt", taxonomy, expect_closed=True)
    assert not closed.clean  # ... are not closed everywhere


def test_cli_exit_codes_and_strict_json(planted: Path, shared: Path, capsys) -> None:
    dictionary = str(shared / "dictionary_and_semantic_hierarchy.txt")
    tiny = str(shared / "train_urls_tiny.txt")
    assert main(["annotations", "check", tiny, "--dictionary", dictionary, "--json"]) == 0
    clean = json.loads(capsys.readouterr().out, parse_constant=_no_nan)
    assert clean["clean"] and clean["keys"] == 100
    assert main(["annotations", "check", str(planted), "--num-classes", "5", "--json"]) == 1
    found = json.loads(capsys.readouterr().out, parse_constant=_no_nan)
    assert found["faults"]["duplicate_keys"]["extra_lines"] == 2
    assert found["not_closed"] is None and found["published"] is None
    assert main(["annotations", "check", str(planted), "--examples", "1"]) == 1
    text = capsys.readouterr().out
    assert "FAULTS FOUND" in text and "lines 2, 6: http://x/dup.jpg (3 times)" in text
    assert main(["annotations", "check", tiny, "--published", "99"]) == 1
    assert "difference +1" in capsys.readouterr().out


def _no_nan(name: str) -> None:
    raise AssertionError(f"{name} in strict JSON")
