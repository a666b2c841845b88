"""Write specs/data/reviews_train.csv and reviews_test.csv: short product reviews labelled positive or negative,
for the text-classification spec (specs/reviews.yaml) and bench/real_data.py.

The reviews are made here, deterministically (a seeded generator over small word lists): a sentence frame,
two or three opinion words that carry the label (one in five is negated: "not good" is negative), and neutral
filler, so that a bag of words learns it and a model that reads word order does a little better. Columns:
``review`` (text) and ``sentiment`` (``positive`` or ``negative``). Run from the repository root:

    python scripts/make_reviews.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent.parent / "specs" / "data"
POSITIVE = ["good", "great", "excellent", "lovely", "solid", "reliable", "sturdy", "comfortable", "fast", "bright"]
NEGATIVE = ["bad", "poor", "awful", "flimsy", "broken", "slow", "noisy", "cheap", "dull", "faulty"]
THINGS = ["kettle", "lamp", "chair", "phone case", "backpack", "blender", "desk", "charger", "jacket", "speaker"]
FRAMES = [
    "the {thing} is {a} and {b}",
    "a {a} {thing}, {b} too",
    "i found the {thing} {a}; the box was {b}",
    "{a} {thing} overall and {b} delivery",
    "my {thing} arrived {a}, {b} and {c}",
]
FILLER = ["honestly", "for the price", "after a week", "as described", "again", "so far", "in the end", ""]


def review(rng: np.random.Generator, positive: bool) -> str:
    own, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
    words = [str(rng.choice(own)) for _ in range(3)]
    if rng.random() < 0.2:  # "not bad" says the opposite of "bad"
        words[0] = f"not {rng.choice(other)}"
    text = str(rng.choice(FRAMES)).format(thing=rng.choice(THINGS), a=words[0], b=words[1], c=words[2])
    return f"{text} {rng.choice(FILLER)}".strip()


def write(path: Path, count: int, rng: np.random.Generator) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for _ in range(count):
            positive = bool(rng.random() < 0.5)
            writer.writerow([review(rng, positive), "positive" if positive else "negative"])


def make_reviews(folder: Path = OUTPUT) -> None:
    rng = np.random.default_rng(2026)
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "reviews_train.csv", 800, rng)
    write(folder / "reviews_test.csv", 200, rng)


if __name__ == "__main__":
    make_reviews()
    print(f"wrote {OUTPUT / 'reviews_train.csv'} and {OUTPUT / 'reviews_test.csv'}")
