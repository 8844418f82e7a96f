"""Driver of tests/engine/test_checkpoint_hook.py: kill -9 a training run at
one stage of its second checkpoint save, once per stage.

    python kill_during_save.py REPO OUT STAGE[,STAGE...] -- TRAIN_ARGS...

For each stage a forked child runs ``tools/train.py TRAIN_ARGS --work-dir
OUT/<stage>`` with SafeCheckpointHook patched to stop at that stage while it
saves ``epoch_2.pth`` (it writes ``OUT/<stage>.paused`` and sleeps); this
process then sends it SIGKILL. Forking after the imports and before any
torch work keeps each run cheap and avoids OpenMP-after-fork trouble.
"""
import importlib.util
import os
import os.path as osp
import signal
import sys
import time

STAGES = ('mid_write', 'before_rename', 'before_last_checkpoint',
          'before_remove')


def _pause(sentinel):
    with open(sentinel, 'w'):
        pass
    time.sleep(600)
    os._exit(3)  # only if nobody kills us


def _arm(stage, sentinel):
    """Patch the save path so that the second save stops at ``stage``."""
    from mmengine.fileio import LocalBackend

    from cls_kd.engine.hooks import checkpoint as module

    if stage == 'mid_write':  # half of epoch_2.pth.tmp is on disk
        put = LocalBackend.put

        def half_put(self, obj, filepath):
            if str(filepath).endswith('epoch_2.pth.tmp'):
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                _pause(sentinel)
            return put(self, obj, filepath)

        LocalBackend.put = half_put
    elif stage in ('before_rename', 'before_last_checkpoint'):
        # commit_file calls: ckpt 1, last_checkpoint 1, ckpt 2, ...
        nth = 3 if stage == 'before_rename' else 4
        commit = module.commit_file
        calls = []

        def paused_commit(tmp_path, path):
            calls.append(path)
            if len(calls) == nth:
                _pause(sentinel)
            return commit(tmp_path, path)

        module.commit_file = paused_commit
    elif stage == 'before_remove':  # of the second save
        remove = module.SafeCheckpointHook._remove_stale
        calls = []

        def paused_remove(self, runner):
            calls.append(1)  # before_train, save 1, save 2
            if len(calls) == 3:
                _pause(sentinel)
            return remove(self, runner)

        module.SafeCheckpointHook._remove_stale = paused_remove
    else:
        raise ValueError(stage)


def main():
    split = sys.argv.index('--')
    repo, out, stages = sys.argv[1:split]
    train_args = sys.argv[split + 1:]
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(repo, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    for stage in stages.split(','):
        work_dir = osp.join(out, stage)
        sentinel = work_dir + '.paused'
        pid = os.fork()
        if pid == 0:
            _arm(stage, sentinel)
            train.main(train_args + ['--work-dir', work_dir])
            os._exit(4)  # the run ended without reaching the stage
        deadline = time.time() + 300
        while not osp.exists(sentinel):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                sys.exit(f'{stage}: the run exited ({status}) before the '
                         f'pause')
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                sys.exit(f'{stage}: no pause within 300 s')
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), status
        assert os.WTERMSIG(status) == signal.SIGKILL, status
        print(f'{stage}: killed')


if __name__ == '__main__':
    main()
