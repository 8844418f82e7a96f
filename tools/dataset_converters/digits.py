"""Write scikit-learn's handwritten digits as an ImageNet-style folder.

    python tools/dataset_converters/digits.py [--out data/digits]

Produces ``<out>/{train,val}/<digit>/<index>.png`` (8x8 grayscale images
scaled to 0-255; pipelines resize them) with a stratified split made with a
fixed seed, so every machine gets the same files. 1797 images, 10 classes.
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/digits', help='output folder')
    parser.add_argument(
        '--val-ratio', type=float, default=0.2, help='share of val images')
    parser.add_argument('--seed', type=int, default=0, help='split seed')
    return parser.parse_args(argv)


def split_indices(labels: np.ndarray, val_ratio: float, seed: int):
    """Stratified split: the same share of every class goes to val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(idx) * val_ratio))
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def convert(out: str, val_ratio: float = 0.2, seed: int = 0) -> dict:
    """Write the folder; returns the number of images per split."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target
    counts = {}
    for split, indices in zip(('train', 'val'),
                              split_indices(labels, val_ratio, seed)):
        for label in range(10):
            os.makedirs(osp.join(out, split, str(label)), exist_ok=True)
        for i in indices:
            path = osp.join(out, split, str(labels[i]), f'{i:04d}.png')
            Image.fromarray(images[i], mode='L').save(path)
        counts[split] = len(indices)
    return counts


def main(argv=None):
    args = parse_args(argv)
    counts = convert(args.out, args.val_ratio, args.seed)
    print(f'Wrote {counts["train"]} train and {counts["val"]} val images to '
          f'{args.out}')


if __name__ == '__main__':
    main()
