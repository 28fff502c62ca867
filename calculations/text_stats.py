"""Statistics of a UTF-8 text, in three files: words.csv, lines.csv and summary.json."""

from __future__ import annotations

import argparse
import collections
import csv
import json
import re
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output_dir")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.output_dir)
    words: collections.Counter[str] = collections.Counter()
    lengths: collections.Counter[int] = collections.Counter()
    lines = chars = 0
    with open(args.input, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            lines += 1
            chars += len(line)
            lengths[len(line.rstrip("\n"))] += 1
            words.update(word.lower() for word in WORD.findall(line))
    with (out / "words.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["word", "count"])
        writer.writerows(words.most_common(args.top))
    with (out / "lines.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["length", "lines"])
        writer.writerows(sorted(lengths.items()))
    summary = {"lines": lines, "characters": chars, "words": sum(words.values())}
    summary["distinct_words"] = len(words)
    (out / "summary.json").write_text(json.dumps(summary, sort_keys=True) + "\n")
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
