"""Tests for the label lists (mlimages.data.label_*): the two parsers agree, errors point at the
line, and the LabelTable operations match naive Python versions."""

from __future__ import annotations

import json
import mmap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mlimages.data.labels import builder as label_builder
from mlimages.data.labels import compiled as label_compiled
from mlimages.data.labels import fast as label_fast
from mlimages.data.labels import parse as label_parse
from mlimages.data.labels import read as label_read
from mlimages.data.labels import swar as label_swar
from mlimages.data.labels import table as label_table
from mlimages.data.labels.parse import LabelListError
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable, label_stats

SHARED = Path(__file__).resolve().parent / "data" / "authors"  # vendored, see its NOTICE.md
SHARED_LISTS = [
    SHARED / "train_urls_tiny.txt",
    SHARED / "train_im_list_tiny.txt",
    *sorted((SHARED / "image_lists").glob("*.txt")),
]
NUM_CLASSES = 11_166


def build(parts: list) -> LabelTable:
    builder = label_builder.TableBuilder()
    for part in parts:
        builder.add(part)
    return builder.build("test")


ENGINES = ["numpy", "compiled"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each fast path: the C scanner (built by every install here) and the numpy one."""
    if request.param == "compiled":
        assert label_compiled._labelscan is not None, (
            "pip install should have built mlimages/data/labels/_labelscan.c"
        )
    return request.param


def fast_and_slow(
    data: bytes, num_classes: int | None = None, vocab_bits: int = 18, engine: str = "numpy"
) -> tuple[LabelTable | None, LabelTable]:
    """Both parsers on the same bytes; the fast result is None where it handed over."""
    slow = build([label_parse.parse_slow(data, 1, "test", num_classes)])
    return fast_only(data, num_classes, vocab_bits, engine), slow


def fast_only(
    data: bytes, num_classes: int | None = None, vocab_bits: int = 18, engine: str = "numpy"
) -> LabelTable | None:
    """The fast path alone; None where it handed over."""
    n = len(data)
    buf = np.zeros(n + 1 + label_swar.PAD_BYTES + 8, dtype=np.uint8)
    buf[:n] = np.frombuffer(data, dtype=np.uint8)
    stop = n
    if n and not data.endswith(b"\n"):
        buf[n] = ord("\n")
        stop += 1
    state = label_fast.FastState(num_classes, compiled=engine == "compiled", vocab_bits=vocab_bits)
    builder = label_builder.TableBuilder()
    return builder.build("test") if label_fast.parse_chunk(buf, 0, stop, state, builder) else None


def assert_same(a: LabelTable, b: LabelTable) -> None:
    assert a == b
    assert a._unique_rows == b._unique_rows


def write(tmp_path: Path, data: str | bytes, name: str = "list.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def random_list(rng: np.random.Generator, lines: int, exotic: bool = False) -> bytes:
    """ML-Images-like text with every variation the format allows (and, if asked, more)."""
    keys = [
        "https://farm{}.staticflickr.com/{}/{}_{:x}_o.jpg",
        "file:///data/images/im_{}_{}_{}_{}.jpg",
        "n{:08d}/n{:08d}_{}.JPEG{}",
        "{}_{}_{}_{}.jpg",
        "café_{}-{}:{}.{}.png",
    ]
    confs = ["1", "1.0", "0.9", "0.8", "0", ".5", "1.", "0.25", "00.50", "0.123456", "0.000001"]
    if exotic:
        confs += ["5e-1", "0.1234567890", "1E0", "0.0000000001"]
    seps = ["\t", " ", "  ", "\t ", " \t", "\t\t"]
    out = []
    for _ in range(lines):
        roll = rng.random()
        if roll < 0.05:
            out.append(rng.choice(["", "  ", "\t", "\r"]) + rng.choice(["\n", "\r\n"]))
            continue
        fmt = keys[rng.integers(len(keys))]
        parts = [fmt.format(*rng.integers(0, 10**6, 4).tolist())]
        for _ in range(rng.integers(0, 13)):
            index = int(rng.integers(0, 20_000))
            text = f"{index:05d}" if rng.random() < 0.05 else str(index)
            if exotic and rng.random() < 0.02:
                text = "0" * 10 + text  # 11+ digits: beyond the fast path
            if rng.random() < 0.8:
                text += ":" + confs[rng.integers(len(confs))]
            parts.append(text)
        line = "".join(p + seps[rng.integers(len(seps))] for p in parts[:-1]) + parts[-1]
        if rng.random() < 0.1:
            line += seps[rng.integers(len(seps))]
        out.append(line + ("\r\n" if rng.random() < 0.3 else "\n"))
    text = "".join(out)
    if rng.random() < 0.5:
        text = text.rstrip("\r\n")
    return text.encode()


# --- the two parsers agree ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_matches_reference_on_random_lists(seed: int, engine: str) -> None:
    data = random_list(np.random.default_rng(seed), 400)
    fast, slow = fast_and_slow(data, engine=engine)
    assert fast is not None, "the fast path should handle every token form used here"
    assert_same(fast, slow)
    assert len(slow) > 300


@pytest.mark.parametrize("seed", range(3))
def test_fast_path_stays_exact_when_vocabulary_slots_collide(seed: int) -> None:
    data = random_list(np.random.default_rng(100 + seed), 300)
    fast, slow = fast_and_slow(data, vocab_bits=2)
    assert fast is not None
    assert_same(fast, slow)


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    """Make ``read_label_list`` take ``engine`` whatever the file's size."""
    if engine == "numpy":  # as on an install without a C compiler
        monkeypatch.setattr(label_compiled, "_labelscan", None)


@pytest.mark.parametrize("chunk_lines", [1, 3, 64, 262_144])
def test_reader_matches_reference_with_fallback_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_lines: int, engine: str
) -> None:
    data = random_list(np.random.default_rng(7), 500, exotic=True)
    monkeypatch.setattr(label_fast, "_SLICE_BYTES", 512)  # many slices per chunk
    monkeypatch.setattr(label_read, "_PIECE_BYTES", 256)  # small reads and newline scans
    use_engine(monkeypatch, engine)
    table = read_label_list(write(tmp_path, data), chunk_lines=chunk_lines, progress=False)
    _, slow = fast_and_slow(data)
    assert_same(table, slow)


def test_exotic_tokens_make_the_fast_path_hand_over(engine: str) -> None:
    for data in (b"a.jpg 1:5e-1 2:0.5\n", b"a.jpg 1:0.5 2:0.12345678901234567\n"):
        fast, slow = fast_and_slow(data, engine=engine)
        assert fast is None
        assert slow.labels(0)[1].tolist()[0] == 0.5
    fast, slow = fast_and_slow(b"img\x017 2:1\n", engine=engine)  # \x01: not whitespace here
    assert (slow.key(0), slow.labels(0)[0].tolist()) == ("img\x017", [2])
    if engine == "numpy":
        assert fast is None
    else:  # the compiled scanner reads keys byte by byte
        assert_same(fast, slow)


@pytest.mark.parametrize(
    "data",
    [
        b"a 1:1 2\n\n \t\r\nb\x0b3:0.5\x0c4\r\n",
        "café.jpg 1:0.5\nn01/ü 2\n".encode(),
        b"a 00000000000000000012:0.000000000000000000001 3:0000.5000\n",
        b"a 0:0 1:1. 2:.25 3:1.0000000000000\n",
        b"a " + b" ".join(b"%d:0.5" % (i % 40) for i in range(100)) + b"\n",
        b"a " + b" ".join(b"%d" % i for i in range(100)) + b"\n",
    ],
    ids=lambda d: repr(d)[:20],
)
def test_fast_paths_on_edge_cases(data: bytes, engine: str) -> None:
    fast, slow = fast_and_slow(data, engine=engine)
    if fast is None:  # handing over is always allowed; the compiled scanner needs it less
        assert engine == "numpy"
    else:
        assert_same(fast, slow)


@pytest.mark.parametrize(
    "data",
    [
        b"a 1:1\n b 2\n",  # leading whitespace
        b"a 1:1.5\n",
        b"a 1:-0\n",
        b"a +1\n",
        b"a 1:\n",
        b"a 1:.\n",
        b"a 1::1\n",
        b"a 1:0.5:1\n",
        b"a 11166\n",
        b"a 99999999999999999999999\n",
        b"a 1\x002\n",
        b"\xff 1\n",
        b"a\xc3 1\n",
        b"a 1:0.5\xc3\xa9\n",
    ],
    ids=lambda d: repr(d)[:20],
)
def test_fast_paths_hand_over_what_they_cannot_validate(data: bytes, engine: str) -> None:
    assert fast_only(data, NUM_CLASSES, engine=engine) is None
    with pytest.raises(LabelListError):
        label_parse.parse_slow(data, 1, "test", NUM_CLASSES)


def test_a_failing_slice_leaves_the_table_as_it_was(engine: str) -> None:
    good = b"".join(b"img_%d.jpg %d:0.9\n" % (i, i % 50) for i in range(200))
    data = good + b"bad.jpg 1:2\n" + good
    buf = np.zeros(len(data) + label_swar.PAD_BYTES + 8, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    state = label_fast.FastState(None, compiled=engine == "compiled")
    builder = label_builder.TableBuilder()
    assert label_fast.parse_chunk(buf, 0, len(good), state, builder)
    before = builder.mark()
    with ThreadPoolExecutor(2) as pool:
        assert not label_fast.parse_chunk(buf, 0, len(data), state, builder, pool.map)
    assert builder.mark() == before
    assert builder.build("test") == fast_and_slow(good)[1]


@pytest.mark.parametrize("path", SHARED_LISTS, ids=lambda p: p.name)
def test_fast_path_matches_reference_on_shared_lists(
    path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    fast, slow = fast_and_slow(path.read_bytes(), NUM_CLASSES, engine=engine)
    assert fast is not None
    assert_same(fast, slow)
    use_engine(monkeypatch, engine)
    assert_same(read_label_list(path, NUM_CLASSES, progress=False), slow)


# --- the reference files --------------------------------------------------------------------


def test_shared_url_list() -> None:
    table = read_label_list(SHARED / "train_urls_tiny.txt", NUM_CLASSES, progress=False)
    assert (len(table), table.num_labels) == (100, 827)
    assert table.key(0) == "https://farm2.staticflickr.com/2034/1557324960_1ae893fed8_o.jpg"
    indices, confs = table.labels(0)
    assert indices.tolist() == [4097, 4089, 4063, 1837, 1054, 1041, 865, 2, 4129, 4132]
    assert confs.tolist() == [1.0] * 10
    assert table.labels(1)[1].tolist() == pytest.approx([0.9, 0.9])
    assert table.key_kind() == "url"
    assert int(table.indices.max()) < NUM_CLASSES


def test_shared_lists_hold_the_same_rows() -> None:
    urls = read_label_list(SHARED / "train_urls_tiny.txt", progress=False)
    files = read_label_list(SHARED / "train_im_list_tiny.txt", progress=False)
    parts = [read_label_list(p, progress=False) for p in SHARED_LISTS[2:]]
    assert files.key_kind() == "file"
    assert files.key(0) == "17382017900_f7152f6e1c_o.jpg"

    def rows(t: LabelTable) -> list:
        return sorted(
            tuple(zip(*(a.tolist() for a in t.labels(i)), strict=True)) for i in range(len(t))
        )

    assert rows(urls) == rows(files)  # "1" and "1.0" both read as 1.0
    assert sum(len(p) for p in parts) == len(files)
    assert [k for p in parts for k in p.keys()] == files.keys()


# --- errors ---------------------------------------------------------------------------------

ERRORS = [
    ("a.jpg 1:1\n\n  b.jpg 2:1\n", 3, "empty key (line starts with whitespace)"),
    ("a.jpg 1:1\n\tb.jpg\n", 2, "empty key"),
    ("a.jpg 1:1\nb.jpg x:1\n", 2, "bad class index 'x'; expected a non-negative integer"),
    ("a.jpg 3.5\n", 1, "bad class index '3.5'; expected a non-negative integer"),
    ("a.jpg -1:1\n", 1, "bad class index '-1'"),
    ("a.jpg :0.5\n", 1, "bad class index ''"),
    ("a.jpg 1:1\r\nb.jpg 11166:1\r\n", 2, "class index 11166 out of range; expected 0..11165"),
    ("a.jpg 99999999999:1\n", 1, "class index 99999999999 out of range; expected 0..11165"),
    ("a.jpg 1:x\n", 1, "bad confidence 'x'; expected a number in [0, 1]"),
    ("a.jpg 1:1.5\n", 1, "bad confidence '1.5'"),
    ("a.jpg 1:-0.1\n", 1, "bad confidence '-0.1'"),
    ("a.jpg 1:nan\n", 1, "bad confidence 'nan'"),
    ("a.jpg 1:\n", 1, "bad confidence ''"),
    ("a.jpg 1:0.5:1\n", 1, "bad confidence '0.5:1'"),
    (b"a.jpg 1\n\xff.jpg 2\n", 2, "is not UTF-8"),
]


@pytest.mark.parametrize(("data", "line", "message"), ERRORS, ids=lambda v: repr(v)[:24])
def test_errors_name_file_line_and_expectation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: str | bytes, line: int, message: str
) -> None:
    use_engine(monkeypatch, "compiled")
    path = write(tmp_path, data)
    with pytest.raises(LabelListError) as caught:
        read_label_list(path, NUM_CLASSES, chunk_lines=1, progress=False)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: ")
    assert message in text
    assert "; expected " in text


def test_error_line_numbers_count_across_chunks_and_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    use_engine(monkeypatch, engine)
    good = "".join(f"img_{i}.jpg {i % 50}:0.9\n" if i % 7 else "\n" for i in range(999))
    path = write(tmp_path, good + "bad.jpg 12:2\n" + good)
    for chunk_lines in (1, 64, 1000, 262_144):
        with pytest.raises(LabelListError, match=r":1000: bad confidence '2'"):
            read_label_list(path, chunk_lines=chunk_lines, progress=False)


def test_out_of_range_needs_num_classes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jpg 11166:1\n")
    assert read_label_list(path, progress=False).labels(0)[0].tolist() == [11166]
    with pytest.raises(LabelListError, match=r"out of range; expected 0\.\.9$"):
        read_label_list(path, num_classes=10, progress=False)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt") as caught:
        read_label_list(path)
    assert caught.value.filename == str(path)


def test_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jpg 1\n")
    with pytest.raises(ValueError, match="chunk_lines"):
        read_label_list(path, chunk_lines=0)
    with pytest.raises(ValueError, match="num_classes"):
        read_label_list(path, num_classes=0)


# --- format details -------------------------------------------------------------------------


def test_format_details(tmp_path: Path) -> None:
    data = "\ufeffa.jpg\t3 7:0.9\r\n\r\n   \nb.jpg\nc.jpg  1:.5\t\t2:1.\nd 4:1"
    table = read_label_list(write(tmp_path, data), progress=False)
    assert table.keys() == ["a.jpg", "b.jpg", "c.jpg", "d"]
    assert [t.tolist() for t in table.labels(0)] == [[3, 7], [1.0, pytest.approx(0.9)]]
    assert table.labels(1)[0].tolist() == []  # a key without labels is fine
    assert table.labels(2)[1].tolist() == [0.5, 1.0]
    assert table.labels(3)[0].tolist() == [4]  # last line without a newline
    assert table.labels_per_image().tolist() == [2, 0, 2, 1]


def test_empty_file(tmp_path: Path) -> None:
    table = read_label_list(write(tmp_path, ""), progress=False)
    assert len(table) == 0 and table.num_labels == 0
    assert table.key_kind() == "file"
    assert label_stats(table)["images"] == 0


def test_dtypes_and_memory(tmp_path: Path) -> None:
    table = read_label_list(write(tmp_path, "a 1:0.5 2\nb 3\n"), progress=False)
    assert table.indices.dtype == np.int32
    assert table.confidences.dtype == np.float32
    assert table.indptr.dtype == table.key_offsets.dtype == np.int64
    assert table.key_bytes.dtype == np.uint8
    assert table.label_nbytes == 8 * 3 + 8 * 3
    with pytest.raises(ValueError):
        table.indices[0] = 5  # stored read-only


def test_progress_bar_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, "a.jpg 1\n")
    read_label_list(path, progress=False)
    read_label_list(path)  # stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""
    read_label_list(path, progress=True)
    assert "list.txt" in capsys.readouterr().err


# --- LabelTable -----------------------------------------------------------------------------


def sample() -> LabelTable:
    return LabelTable.from_rows(
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        [[(2, 0.8), (4, 0.9)], [], [(1, 1.0), (2, 0.0), (1, 0.5)], [(5, 0.3)]],
        source="mem",
    )


def test_from_rows_and_accessors() -> None:
    table = sample()
    assert len(table) == 4 and table.num_labels == 6
    assert table.key(-1) == "d.jpg" and table.keys()[1] == "b.jpg"
    assert table.labels(2)[0].tolist() == [1, 2, 1]
    assert table == LabelTable.from_rows(
        table.keys(), [[(2, 0.8), (4, 0.9)], [], [(1, 1.0), (2, 0), (1, 0.5)], [(5, 0.3)]]
    )
    assert "4 images" in repr(table)
    with pytest.raises(IndexError):
        table.key(4)


@pytest.mark.parametrize(
    ("keys", "rows"),
    [
        (["a b"], [[]]),
        ([""], [[]]),
        (["a"], [[(-1, 1.0)]]),
        (["a"], [[(1, 1.5)]]),
        (["a"], [[(1, float("nan"))]]),
        (["a", "b"], [[]]),
    ],
)
def test_from_rows_rejects_what_the_format_cannot_hold(keys: list, rows: list) -> None:
    with pytest.raises(ValueError):
        LabelTable.from_rows(keys, rows)


def test_key_kind(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    use_engine(monkeypatch, engine)

    def kind(*keys: str) -> str:
        return LabelTable.from_rows(list(keys), [[] for _ in keys]).key_kind()

    assert kind("https://a.b/c.jpg", "http://x", "file:///data/im.jpg", "s3+x.y-z://b") == "url"
    assert kind("n04310904/n04310904_8388.JPEG", "n00000001/x") == "imagenet"
    assert kind("img.jpg", "ftp:/x", "1http://x", "n04310904/a/b.JPEG", "n0431090/x") == "file"
    assert kind("averyveryverylongscheme://x") == "file"  # schemes are read from 16 bytes
    assert kind("https://a.jpg", "n04310904/x.JPEG") == "mixed"
    assert kind("https://a.jpg", "b.jpg") == "mixed"


def test_compiled_key_kinds_match_numpy() -> None:
    rng = np.random.default_rng(3)
    alphabet = list("ab:/n0123456789.+-_") + ["é", "\x01"]
    keys = ["".join(rng.choice(alphabet, rng.integers(1, 24))) for _ in range(20_000)]
    keys += [f"n{rng.integers(10**8):08d}/{k}" for k in keys[:3000]]
    schemes = ["http", "a", "s3+x.y-z", "abcdefghijklm", "abcdefghijklmn"]
    keys += [f"{schemes[i % 5]}://{k}" for i, k in enumerate(keys[:3000])]
    table = LabelTable.from_rows(keys, [[] for _ in keys])
    numpy_codes = table._kind_codes(compiled=False)
    assert set(np.unique(numpy_codes).tolist()) == {0, 1, 2}
    assert np.array_equal(table._kind_codes(compiled=True), numpy_codes)


def test_images_per_class_counts_rows_once() -> None:
    table = sample()
    assert table.images_per_class(6).tolist() == [0, 1, 1, 0, 1, 1]  # conf 0 is not a label
    assert table.images_per_class(6, threshold=0.8).tolist() == [0, 1, 1, 0, 1, 0]
    assert table.images_per_class(6, threshold=0.95).tolist() == [0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="out of range"):
        table.images_per_class(5)


@pytest.mark.parametrize("num_classes", [None, 100])  # the C scanner: sort, or stamp per class
def test_unique_rows_flag_from_the_parser_matches_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, num_classes: int | None
) -> None:
    use_engine(monkeypatch, engine)
    long_row = " ".join(str(i) for i in range(40))
    for text, unique in [
        ("a 1 2\nb 1 1\n", False),
        ("a 1 2\nb 2 1\n", True),
        ("a 1 2\nb 3\nc 2 1 3\nd 4 2 4\n", False),
        (f"a {long_row}\nb {long_row} 0\n", False),
        (f"a {long_row}\nb {long_row} 40\n", True),
    ]:
        table = read_label_list(write(tmp_path, text), num_classes, progress=False)
        fresh = LabelTable(
            *(getattr(table, f) for f in ("key_bytes", "key_offsets", "indptr")),
            table.indices,
            table.confidences,
        )
        assert table._unique_rows is fresh._unique_rows is unique


class FakeTaxonomy:
    """0 <- 1 <- 2, 0 <- 3 <- 4, 5 alone; ancestors include the class itself."""

    num_classes = 6
    parents = [-1, 0, 1, 0, 3, -1]

    def ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]:
        lists = []
        for c in range(self.num_classes):
            chain = [c]
            while self.parents[chain[-1]] >= 0:
                chain.append(self.parents[chain[-1]])
            lists.append(chain)
        indptr = np.concatenate(([0], np.cumsum([len(x) for x in lists]))).astype(np.int64)
        return indptr, np.array([a for x in lists for a in x], dtype=np.int32)


def naive_close(table: LabelTable, taxonomy: FakeTaxonomy) -> list[dict[int, float]]:
    indptr, indices = taxonomy.ancestor_csr()
    out = []
    for i in range(len(table)):
        row: dict[int, float] = {}
        for c, conf in zip(*(a.tolist() for a in table.labels(i)), strict=True):
            for a in indices[indptr[c] : indptr[c + 1]].tolist():
                row[a] = max(row.get(a, -1.0), conf)
        out.append(row)
    return out


def test_close_adds_ancestors_with_max_confidence(monkeypatch: pytest.MonkeyPatch) -> None:
    table = LabelTable.from_rows(
        ["a", "b", "c", "d"],
        [[(2, 0.8), (4, 0.9)], [(2, 0.5), (1, 0.7)], [], [(1, 0.6), (2, 0.9), (2, 0.1)]],
    )
    closed = table.close(FakeTaxonomy())
    assert closed.labels(0)[0].tolist() == [0, 1, 2, 3, 4]
    assert closed.labels(0)[1].tolist() == pytest.approx([0.9, 0.8, 0.8, 0.9, 0.9])
    assert closed.labels(1)[1].tolist() == pytest.approx([0.7, 0.7, 0.5])
    assert closed.labels(2)[0].tolist() == []
    assert closed.labels(3)[1].tolist() == pytest.approx([0.9, 0.9, 0.9])
    assert closed.keys() == table.keys()

    rng = np.random.default_rng(3)
    rows = [
        [(int(c), float(rng.choice([0.0, 0.3, 0.8, 1.0]))) for c in rng.integers(0, 6, k)]
        for k in rng.integers(0, 6, 200)
    ]
    table = LabelTable.from_rows([f"k{i}" for i in range(200)], rows)
    monkeypatch.setattr(label_table, "_CLOSE_ROWS", 7)
    closed = table.close(FakeTaxonomy())
    for i, want in enumerate(naive_close(table, FakeTaxonomy())):
        indices, confs = closed.labels(i)
        assert indices.tolist() == sorted(want)
        assert confs.tolist() == pytest.approx([want[c] for c in sorted(want)])


def test_close_checks_the_taxonomy() -> None:
    class Broken(FakeTaxonomy):
        def ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]:
            indptr, indices = super().ancestor_csr()
            return indptr, indices + 1

    with pytest.raises(ValueError, match="outside"):
        sample().close(Broken())
    with pytest.raises(ValueError, match="out of range"):
        LabelTable.from_rows(["a"], [[(6, 1.0)]]).close(FakeTaxonomy())


def test_select_and_to_dense() -> None:
    table = sample()
    picked = table.select(np.array([3, 0, -1]))
    assert picked.keys() == ["d.jpg", "a.jpg", "d.jpg"]
    assert picked.labels(1)[0].tolist() == [2, 4]
    assert len(table.select(np.array([], dtype=np.int64))) == 0
    with pytest.raises(IndexError):
        table.select(np.array([4]))
    dense = table.to_dense(np.array([2, 0]), 6)
    assert dense.dtype == np.float32 and dense.shape == (2, 6)
    assert dense[0].tolist() == pytest.approx([0, 1.0, 0, 0, 0, 0])  # duplicate keeps the max
    assert dense[1].tolist() == pytest.approx([0, 0, 0.8, 0, 0.9, 0])
    assert table.to_dense(None, 6).shape == (4, 6)
    with pytest.raises(ValueError):
        table.to_dense(None, 5)


@pytest.mark.parametrize("dense_pairs", [1 << 22, 0])
def test_cooccurrence_matches_dense_counts(
    monkeypatch: pytest.MonkeyPatch, dense_pairs: int
) -> None:
    monkeypatch.setattr(label_table, "_DENSE_PAIRS", dense_pairs)
    monkeypatch.setattr(label_table, "_LABEL_BUDGET", 16)
    rng = np.random.default_rng(5)
    rows = [
        [(int(c), float(rng.choice([0.0, 0.5, 1.0]))) for c in rng.integers(0, 30, k)]
        for k in rng.integers(0, 8, 300)
    ]
    table = LabelTable.from_rows([f"k{i}" for i in range(300)], rows)
    binary = (table.to_dense(None, 30) > 0).astype(np.int64)
    classes = np.array([7, 3, 29, 0, 12])
    expected = binary[:, classes].T @ binary[:, classes]
    assert table.cooccurrence(classes).tolist() == expected.tolist()
    assert np.diag(expected).tolist() == table.images_per_class(30)[classes].tolist()
    assert table.cooccurrence(np.array([], dtype=np.int64)).shape == (0, 0)
    with pytest.raises(ValueError):
        table.cooccurrence(np.array([1, 1]))


def test_write_round_trips_and_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(label_table, "_LABEL_BUDGET", 16)
    rng = np.random.default_rng(11)
    confs = np.concatenate(([0.0, 1.0, 0.9, 1e-8, 0.1 + 0.2], rng.random(2000))).astype(np.float32)
    rows = [
        [(int(i), float(c)) for i, c in zip(rng.integers(0, 11166, 5), chunk, strict=True)]
        for chunk in confs.reshape(-1, 5)
    ]
    table = LabelTable.from_rows([f"img_{i}_ü.jpg" for i in range(len(rows))], rows)
    path = tmp_path / "out.txt"
    table.write(path)
    assert read_label_list(path, progress=False) == table
    assert path.read_text().splitlines()[0].split("\t")[1:3] == [
        f"{rows[0][0][0]}:0",
        f"{rows[0][1][0]}:1",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]

    broken = LabelTable(np.frombuffer(b"\xff", np.uint8), [0, 1], [0, 0], [], [])
    with pytest.raises(UnicodeDecodeError):
        broken.write(path)
    assert read_label_list(path, progress=False) == table  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_label_stats_is_json_ready() -> None:
    stats = label_stats(sample())
    assert json.loads(json.dumps(stats)) == stats
    assert stats == {
        "images": 4,
        "labels": 6,
        "labels_per_image_mean": 1.5,
        "labels_per_image_max": 3,
        "classes_used": 4,
        "key_kind": "file",
        "images_per_class_mean": 1.0,
    }
    assert all(type(v) in (int, float, str) for v in stats.values())
    assert label_stats(sample(), num_classes=100)["classes_used"] == 4


def test_columns_mapped_at_once_hold_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """Big reads map their output columns (``_mapped``): same values, a trimmed view."""
    use_engine(monkeypatch, engine)
    path = write(tmp_path, random_list(np.random.default_rng(7), 15_000))
    expected = read_label_list(path, chunk_lines=2000, progress=False)
    # every column that grows is mapped
    monkeypatch.setattr(label_builder, "_PREFAULT_MIN_BYTES", 0)
    mapped = read_label_list(path, chunk_lines=2000, progress=False)
    assert_same(mapped, expected)
    assert mapped.num_labels > 1 << 16  # so labels too outgrew the columns' first arrays
    for name in ("key_bytes", "indices", "confidences"):
        array, base = getattr(mapped, name), getattr(mapped, name)
        while base is not None and not isinstance(base, mmap.mmap):
            base = base.base if isinstance(base, np.ndarray) else getattr(base, "obj", None)
        assert isinstance(base, mmap.mmap), name
        assert array.nbytes <= len(base)
