"""`annotations check` on a generated list: its time against `read_label_list`'s.

Writes a seeded ML-Images-like list (the generator of `label_parsing.py`), plants a bad
confidence on every `--fault-every`-th line, and times the plain reader on the clean list and
the check on both, with the authors' dictionary when it is found (closure) and 11,166
classes otherwise. Exits non-zero when the check on the clean list takes more than
`RATIO_GOAL` times the reader.

    python benchmarks/list_check.py [--lines 1000000] [--fault-every 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from label_parsing import NUM_CLASSES, write_list

from mlimages.data.labels.check import check_list
from mlimages.data.labels.read import read_label_list
from mlimages.data.taxonomy import load_dictionary

RATIO_GOAL = 5.0
DICTIONARY = (
    Path(__file__).resolve().parents[2] / "shared/ml-images/dictionary_and_semantic_hierarchy.txt"
)


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--fault-every", type=int, default=1000)
    args = parser.parse_args(argv)
    taxonomy = load_dictionary(DICTIONARY) if DICTIONARY.is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        clean, faulty = Path(tmp) / "clean.txt", Path(tmp) / "faulty.txt"
        write_list(clean, args.lines)
        with open(clean, "rb") as f, open(faulty, "wb") as out:
            for number, line in enumerate(f, 1):
                planted = number % args.fault_every == 0
                out.write(line.rstrip(b"\n") + b"\t7:1.5\n" if planted else line)
        read_s, _ = _timed(read_label_list, clean)
        classes = None if taxonomy else NUM_CLASSES
        check_s, report = _timed(check_list, clean, taxonomy, classes)
        faulty_s, found = _timed(check_list, faulty, taxonomy, classes)
    planted = args.lines // args.fault_every
    print(f"{args.lines:,} lines, dictionary: {'yes' if taxonomy else 'no'}")
    print(f"read_label_list, clean list    {read_s:6.2f} s")
    print(f"check, clean list              {check_s:6.2f} s  ({check_s / read_s:.1f}x the reader)")
    print(f"check, {planted:,} faults planted   {faulty_s:6.2f} s")
    assert report.clean, "the generated list has no faults"
    assert found.faults["bad_confidence"].count == planted
    return 0 if check_s <= RATIO_GOAL * read_s else 1


if __name__ == "__main__":
    sys.exit(main())
