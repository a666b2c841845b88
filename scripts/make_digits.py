"""Write specs/data/digits.npz, the small example data set the shipped specs train on.

Source: scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``, 1,797
images, shipped inside scikit-learn, no download). Output, compressed with ``np.savez_compressed``:

- ``x``: float32, shape (1797, 8, 8, 1), pixel values scaled from 0..16 to [0, 1]
- ``y``: int64, shape (1797,), digit labels 0..9

scikit-learn is needed only to run this script, not by seq: ``pip install scikit-learn``, then
``python scripts/make_digits.py`` from the repository root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent.parent / "specs" / "data" / "digits.npz"


def make_digits(output: Path = OUTPUT) -> Path:
    """Write the digits arrays to ``output`` and return its path."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, x=x, y=y)
    return output


if __name__ == "__main__":
    path = make_digits()
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
