"""A checkpoint hook that never leaves the work dir without a complete
checkpoint, even when the process is killed (``kill -9``, pre-emption, OOM)
in the middle of a save."""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from cls_kd.registry import HOOKS

__all__ = ['SafeCheckpointHook', 'commit_file', 'write_text_atomic']

# Suffix of the files being written; ``--resume`` never picks them up since
# it only reads ``epoch_*.pth`` / ``iter_*.pth``.
TMP_SUFFIX = '.tmp'
# Message-hub entry (saved in each checkpoint): the steps whose checkpoints
# fell out of ``max_keep_ckpts`` and are removed once the new one is safe.
STALE_KEY = 'stale_ckpt_ids'


def _fsync_dir(path: str) -> None:
    """Persist a rename in ``path`` (best effort: not all systems let a
    folder be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp_path: str, path: str) -> None:
    """Flush ``tmp_path`` to disk, then rename it to ``path`` in one step.

    ``os.replace`` within one folder is atomic: a reader (or a later
    ``--resume``) sees either the old ``path`` or the complete new one.

    Args:
        tmp_path (str): The fully written file.
        path (str): Its final name, in the same folder.
    """
    fd = os.open(tmp_path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_path, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and
    :func:`commit_file`, so that ``path`` is never empty or half written.

    Args:
        path (str): The file to (re)write.
        text (str): Its new content.
    """
    tmp_path = path + TMP_SUFFIX
    with open(tmp_path, 'w') as f:
        f.write(text)
    commit_file(tmp_path, path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe saving.

    mmengine writes ``epoch_N.pth`` in place, rewrites ``last_checkpoint``
    in place, and deletes the oldest checkpoint (``max_keep_ckpts``)
    *before* writing the new one: a process killed at the wrong moment
    leaves an empty ``last_checkpoint`` and, with ``max_keep_ckpts=1``, no
    complete checkpoint at all. This hook, for checkpoint files (mmengine's
    ``Runner``) on a local or mounted file system:

    1. writes ``<name>.pth.tmp``, flushes it to disk and renames it to
       ``<name>.pth`` (atomic);
    2. then rewrites ``last_checkpoint`` the same way;
    3. only then removes the checkpoint that fell out of
       ``max_keep_ckpts`` (the new checkpoint records it, so that a run
       killed before this step and resumed removes it then).

    A kill at any point leaves the previous checkpoint and
    ``last_checkpoint`` valid (a kill between 1 and 2 leaves the new
    checkpoint complete too; ``tools/train.py --resume`` picks the newest
    loadable one). Other storage backends (``backend_args``,
    ``file_client_args``) get mmengine's behaviour unchanged, as do
    ``save_best`` checkpoints, which ``--resume`` never reads.

    Args:
        **kwargs: mmengine ``CheckpointHook``'s arguments (``interval``,
            ``by_epoch``, ``max_keep_ckpts``, ``save_best``, ...).
    """

    def _is_local(self) -> bool:
        return (self.file_client_args is None
                and isinstance(self.file_backend, LocalBackend))

    def before_train(self, runner) -> None:
        """Also remove the checkpoints that the run resumed from had
        scheduled for removal: a run killed after writing a checkpoint but
        before removing the old ones leaves them behind."""
        super().before_train(runner)
        if self._is_local() and is_main_process():
            self._remove_stale(runner)

    def _advance_keep_list(self, runner, step: int) -> None:
        """Record ``step`` among the kept checkpoints, as mmengine does, and
        the steps that fall out as stale; both lists are saved in the
        checkpoint, the files are removed only after it is complete."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            return
        stale = []
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            stale.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
        runner.message_hub.update_info(STALE_KEY, stale)

    def _remove_stale(self, runner) -> None:
        """Remove the checkpoints of the stale steps (never a kept one)."""
        kept = getattr(self, 'keep_ckpt_ids', ())  # max_keep_ckpts > 0
        for step in runner.message_hub.get_info(STALE_KEY, []):
            if step in kept:
                continue
            path = osp.join(self.out_dir, self.filename_tmpl.format(step))
            if osp.isfile(path):
                os.remove(path)
        runner.message_hub.update_info(STALE_KEY, [])

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        self._advance_keep_list(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        # The Runner writes on the main process only.
        runner.save_checkpoint(
            self.out_dir,
            filename + TMP_SUFFIX,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        commit_file(self.last_ckpt + TMP_SUFFIX, self.last_ckpt)
        write_text_atomic(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        self._remove_stale(runner)
