"""Estimate pi by sampling points in the unit square; print ``PROGRESS <0..1>`` as it goes.

Deterministic for a given seed and sample count. Writes {"pi", "samples", "seed", "inside"}
as JSON to --out, and the estimate to stdout.
"""

from __future__ import annotations

import argparse
import json
import random


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    inside = 0
    step = max(1, args.samples // 20)
    for done in range(1, args.samples + 1):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            inside += 1
        if done % step == 0:
            print(f"PROGRESS {done / args.samples:.3f}", flush=True)
    estimate = 4.0 * inside / args.samples
    with open(args.out, "w") as handle:
        json.dump(
            {"pi": estimate, "samples": args.samples, "seed": args.seed, "inside": inside}, handle
        )
    print(f"pi ~= {estimate}")


if __name__ == "__main__":
    main()
