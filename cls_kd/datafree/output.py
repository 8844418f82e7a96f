"""The folder a synthesis run writes: an ImageNet-style image folder, one
record per finished batch (what a rerun skips) and a manifest.

    DIR/train/<class folder>/b{batch:05d}_{i:03d}.png
    DIR/batches/b{batch:05d}.json
    DIR/manifest.json
    DIR/grid.png
"""
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

__all__ = [
    'class_folder_names', 'rank_batches', 'label_counts',
    'SettingsMismatchError', 'SynthesisOutput'
]

_SAFE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')


def class_folder_names(classes: Sequence[str]) -> List[str]:
    """Folder names that sort in class-index order.

    mmpretrain's folder datasets number the classes by sorted folder name,
    so the names are kept only if they already sort in index order and are
    safe file names; otherwise each becomes ``{index}_{name}`` with the
    index zero-padded and the name reduced to ``[A-Za-z0-9._-]``.
    """
    classes = [str(c) for c in classes]
    if sorted(classes) == classes and len(set(classes)) == len(classes) \
            and all(_SAFE.match(c) for c in classes):
        return classes
    width = len(str(len(classes) - 1))
    return [
        f'{k:0{width}d}_' + re.sub(r'[^A-Za-z0-9._-]+', '_', c)[:40]
        for k, c in enumerate(classes)
    ]


def rank_batches(num_batches: int, rank: int, world_size: int) -> List[int]:
    """The batches process ``rank`` of ``world_size`` synthesises:
    ``b % world_size == rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} is not in [0, {world_size}).')
    return list(range(rank, num_batches, world_size))


class SettingsMismatchError(RuntimeError):
    """The output folder holds a run made with other settings."""


def _write_json(path: str, data: dict) -> None:
    """Write atomically: a reader sees the old file or the new one."""
    tmp = f'{path}.tmp.{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _settings(manifest: dict) -> dict:
    """What must not change between the runs writing one folder."""
    synthesis = dict(manifest.get('synthesis') or {})
    synthesis.pop('log_interval', None)  # does not change the images
    return dict(teacher=manifest.get('teacher'),
                student=manifest.get('student'), synthesis=synthesis)


def _differences(old, new, prefix: str = '') -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(
                old.get(key, '<absent>'), new.get(key, '<absent>'),
                f'{prefix}.{key}' if prefix else key)
        return found
    return [] if old == new else [f'{prefix}: {old!r} -> {new!r}']


class SynthesisOutput:
    """Reads and writes a synthesis output folder.

    Args:
        root (str): The folder (``--out``).
        folders (list[str]): Class folder names, by class index.
        grayscale (bool): Write 8-bit gray PNGs instead of RGB ones.
    """

    def __init__(self, root: str, folders: Sequence[str], grayscale: bool):
        self.root, self.folders = root, list(folders)
        self.grayscale = grayscale
        self.manifest_path = osp.join(root, 'manifest.json')

    def record_path(self, batch: int) -> str:
        return osp.join(self.root, 'batches', f'b{batch:05d}.json')

    def image_path(self, batch: int, i: int, label: int) -> str:
        return osp.join(self.root, 'train', self.folders[label],
                        f'b{batch:05d}_{i:03d}.png')

    def done(self, batch: int) -> bool:
        return osp.isfile(self.record_path(batch))

    def check_settings(self, manifest: dict) -> None:
        """Refuse to continue a run made with other settings: the teacher
        and student specs and the synthesis settings (but ``log_interval``)
        of ``manifest`` must be those of the manifest in the folder.

        Raises:
            SettingsMismatchError: Lists the differing keys.
        """
        if not osp.isfile(self.manifest_path):
            return
        with open(self.manifest_path) as f:
            old = json.load(f)
        differences = _differences(
            _settings(old), _settings(json.loads(json.dumps(manifest))))
        if differences:
            raise SettingsMismatchError(
                f'{self.root} holds a synthesis run with other settings '
                f'(old -> new): {"; ".join(differences)}. Use another --out '
                f'or the settings of that run.')

    def start(self, manifest: dict) -> None:
        """Write the manifest of an unfinished run (its settings are what a
        rerun is checked against) and the class folders."""
        for folder in self.folders:
            os.makedirs(osp.join(self.root, 'train', folder), exist_ok=True)
        os.makedirs(osp.join(self.root, 'batches'), exist_ok=True)
        _write_json(self.manifest_path, dict(manifest, complete=False))

    def write_batch(self, batch: int, images: np.ndarray,
                    labels: Sequence[int], record: dict) -> None:
        """The batch's PNGs, then its record (so a record means the images
        are all there)."""
        for i, (image, label) in enumerate(zip(images, labels)):
            # uint8 H x W is written 8-bit gray, H x W x 3 RGB.
            Image.fromarray(image.squeeze(-1) if self.grayscale else image
                            ).save(self.image_path(batch, i, label))
        _write_json(self.record_path(batch), dict(record, index=batch))

    def records(self, num_batches: int) -> List[Optional[dict]]:
        """Each batch's record, None where it is not done."""
        found = []
        for batch in range(num_batches):
            path = self.record_path(batch)
            if osp.isfile(path):
                with open(path) as f:
                    found.append(json.load(f))
            else:
                found.append(None)
        return found

    def finish(self, manifest: dict, records: List[dict]) -> dict:
        """Write the complete manifest: ``manifest`` plus the batch records
        and the overall teacher top-1."""
        images = sum(r['images'] for r in records)
        accuracy = sum(r['teacher_top1'] * r['images']
                       for r in records) / max(images, 1)
        manifest = dict(
            manifest, complete=True, num_images=images,
            teacher_top1=accuracy, batches=records)
        _write_json(self.manifest_path, manifest)
        return manifest

    def write_grid(self, per_class: int = 10, max_classes: int = 16) -> str:
        """``grid.png``: rows = the first ``max_classes`` classes, up to
        ``per_class`` of their images each."""
        rows = []
        for folder in self.folders[:max_classes]:
            directory = osp.join(self.root, 'train', folder)
            names = sorted(os.listdir(directory))[:per_class]
            rows.append([np.asarray(Image.open(osp.join(directory, n)))
                         for n in names])
        sample = next(img for row in rows for img in row)
        height, width = sample.shape[:2]
        canvas = np.zeros(
            (len(rows) * height, per_class * width) + sample.shape[2:],
            dtype=np.uint8)
        for r, row in enumerate(rows):
            for c, img in enumerate(row):
                canvas[r * height:(r + 1) * height,
                       c * width:(c + 1) * width] = img
        path = osp.join(self.root, 'grid.png')
        Image.fromarray(canvas).save(path)
        return path


def label_counts(labels: Sequence[int]) -> Dict[str, int]:
    """``{class index: images}`` of a batch, for its record."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
