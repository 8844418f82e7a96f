"""The folder a synthesis run writes: an ImageNet-style image folder, one
record per finished batch (what a rerun skips) and a manifest.

    DIR/train/<class folder>/b{batch:05d}_{i:03d}.png
    DIR/batches/b{batch:05d}.json
    DIR/manifest.json
    DIR/grid.png

A batch record holds, per image in batch order, the teacher's probability
of the image's class (``teacher_probs``) and its top-1 class
(``teacher_predictions``); folders written before these were stored have
neither.
"""
import json
import os
import os.path as osp
import re
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = [
    'class_folder_names', 'rank_batches', 'label_counts',
    'SettingsMismatchError', 'SynthesisOutput', 'check_output_folder',
    'find_synthesis', 'finish_command'
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


def check_output_folder(root: str) -> None:
    """Refuse an output folder that is a file, or lies under one, before
    anything is computed (``os.makedirs`` would fail only when the first
    batch is written).

    Raises:
        NotADirectoryError: Names the file.
    """
    path = osp.abspath(root)
    while not osp.exists(path) and osp.dirname(path) != path:
        path = osp.dirname(path)
    if not osp.isdir(path):
        what = 'is a file, not a folder' if path == osp.abspath(root) else \
            f'lies under the file {path}'
        raise NotADirectoryError(
            f'{root} {what}: name a new folder, or the folder of a synthesis '
            f'run to continue it.')


def find_synthesis(folder: str) -> Optional[Tuple[str, dict]]:
    """The synthesis run whose images ``folder`` holds: ``(root,
    manifest)`` when ``folder`` (the ``--out`` folder) or its parent
    (``folder`` being its ``train/``) has a synthesis ``manifest.json``;
    None otherwise."""
    folder = osp.normpath(folder)
    for root in (folder, osp.dirname(folder)):
        path = osp.join(root, 'manifest.json')
        if osp.isfile(path):
            with open(path) as f:
                manifest = json.load(f)
            if isinstance(manifest, dict) and 'synthesis' in manifest and \
                    'complete' in manifest:
                return root, manifest
    return None


def finish_command(root: str, manifest: dict) -> str:
    """The command that finishes (resumes) the synthesis run in ``root``:
    the command the run recorded, without ``--max-batches``; for manifests
    without one, the config and teacher checkpoint they name."""
    if manifest.get('command'):
        return manifest['command']
    words = ['python', 'tools/synthesize.py', str(manifest.get('config')),
             '--out', root]
    if manifest.get('checkpoint'):
        words += ['--cfg-options', f'teacher.checkpoint='
                  f'{manifest["checkpoint"]}']
    return shlex.join(words) + ' (with the --cfg-options of the run that ' \
        'started it)'


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

    Raises:
        NotADirectoryError: ``root`` is a file (see
            :func:`check_output_folder`).
    """

    def __init__(self, root: str, folders: Sequence[str], grayscale: bool):
        check_output_folder(root)
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

    def write_grid(self, per_class: int = 8, num_classes: int = 10):
        """``grid.png``: the first ``num_classes`` classes, one row each, up
        to ``per_class`` images each, upscaled and labelled (see
        :func:`cls_kd.datafree.grid.draw_synthesis_grid`).

        Returns:
            SynthesisGrid: What was drawn, and where.
        """
        from .grid import draw_synthesis_grid  # matplotlib: only to draw
        return draw_synthesis_grid(self.root, per_class=per_class,
                                   num_classes=num_classes)


def label_counts(labels: Sequence[int]) -> Dict[str, int]:
    """``{class index: images}`` of a batch, for its record."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
