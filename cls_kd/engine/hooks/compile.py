"""The hook that compiles a model's hot parts before training starts."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from cls_kd.registry import HOOKS
from cls_kd.utils.compile import compile_model, compile_options

__all__ = ['CompileHook']


@HOOKS.register_module()
class CompileHook(Hook):
    """``torch.compile`` the parts of the model a training step runs
    (:func:`cls_kd.utils.compile_model`), in place, before the first
    iteration.

    ``tools/train.py`` adds it for ``--compile`` or a ``compile`` key in
    the config (``True`` or a dict of :func:`torch.compile` options), and
    takes the key away from mmengine's runner, whose own ``compile`` would
    compile the whole ``train_step`` (optimizer and hooks included: graph
    breaks everywhere). The first iterations are slow while the graphs are
    compiled; the parameters, their names and the checkpoints are those of
    the eager model.

    Args:
        **compile_options: Options of :func:`torch.compile`, e.g.
            ``mode='max-autotune'``.
    """

    priority = 'VERY_LOW'

    def __init__(self, **options):
        self.compile_options = compile_options(options)
        self.compiled = []

    def before_train(self, runner) -> None:
        if self.compiled:  # e.g. a second runner.train()
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.compiled = compile_model(model, **self.compile_options)
        options = ', '.join(f'{k}={v!r}'
                            for k, v in self.compile_options.items())
        runner.logger.info(
            f'torch.compile ({options or "default options"}): '
            f'{", ".join(self.compiled)}; the first iterations compile.')
