"""Generate the colored-texture data set with its concept values, and a preview grid of the images."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from mftma.errors import MFTMAError
from mftma.experiments.checkpoints import atomic_write
from mftma.experiments.datasets import textures_dataset
from mftma.experiments.textures import CLASS_NAMES, make_textures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate 32x32 RGB texture images (16 classes: 4 dominant hues x 4 texture families) with "
                    "their concept values (hue-range fractions, GLCM statistics), write them as an .npz that "
                    "mftma.experiments.datasets.Dataset.load reads, and optionally a PNG preview grid.")
    parser.add_argument("--out", required=True, help="output .npz file (written atomically)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--n-train", type=int, default=6400, help="training images (default: 6400)")
    parser.add_argument("--n-test", type=int, default=1600, help="test images (default: 1600)")
    parser.add_argument("--preview", help="also write a PNG grid with one row of training images per class")
    parser.add_argument("--per-class", type=int, default=8, help="images per row of the preview (default: 8)")
    return parser


def write_preview(path: str, images: np.ndarray, labels: np.ndarray, per_class: int) -> None:
    """Save a grid whose row k shows the first ``per_class`` images of class k."""
    import matplotlib.pyplot as plt
    from skimage.util import montage

    rows = [np.flatnonzero(labels == label)[:per_class] for label in range(len(CLASS_NAMES))]
    per_class = min(len(row) for row in rows)
    chosen = np.concatenate([row[:per_class] for row in rows])
    grid = montage(images[chosen], grid_shape=(len(rows), per_class), channel_axis=-1, padding_width=2,
                   fill=(255, 255, 255))
    atomic_write(path, lambda temporary: plt.imsave(temporary, grid, format="png"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.n_train, args.n_test, args.per_class) < 1:
        parser.error("--n-train, --n-test and --per-class must be at least 1")
    try:
        images, labels = make_textures(args.n_train + args.n_test, seed=args.seed)
        textures_dataset(images, labels, n_train=args.n_train).save(args.out)
        if args.preview:
            write_preview(args.preview, images[:args.n_train], labels[:args.n_train], args.per_class)
    except MFTMAError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"wrote {args.out}: {args.n_train} train and {args.n_test} test images, {len(CLASS_NAMES)} classes"
          + (f"; preview {args.preview}" if args.preview else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
