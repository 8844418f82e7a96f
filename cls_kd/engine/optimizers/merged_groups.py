"""Optimizer construction without one parameter group per parameter."""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor

from cls_kd.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['merge_param_groups', 'MergedGroupsOptimWrapperConstructor']


# Keys that are not optimizer settings: mmengine leaves the multipliers of
# ``custom_keys`` in the groups after applying them to lr / weight_decay.
_NOT_SETTINGS = ('params', 'lr_mult', 'decay_mult')


def merge_param_groups(groups: List[dict],
                       defaults: Optional[dict] = None) -> List[dict]:
    """Merge parameter groups whose hyper-parameters are all equal.

    A group without an option uses the optimizer's default, given in
    ``defaults``. The order of first appearance is kept, and so are the
    parameters' order inside each group; the optimizer's maths is unchanged.
    """
    merged = {}
    for group in groups:
        options = dict(defaults or {})
        options.update((k, v) for k, v in group.items()
                       if k not in _NOT_SETTINGS)
        key = repr(sorted(options.items()))
        if key not in merged:
            merged[key] = dict(options, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with equal groups merged.

    With a ``paramwise_cfg`` (no weight decay on norms/biases/tokens, as in
    the DeiT recipe) mmengine makes one group per parameter: ~160 for a ViT,
    which makes every optimizer step loop over them in Python. Merged, the
    same settings need two or three groups.
    """

    def add_params(self, params: List[dict], module, prefix: str = '',
                   **kwargs) -> None:
        super().add_params(params, module, prefix=prefix, **kwargs)
        if prefix == '':  # the outermost call: every group is there
            defaults = dict(lr=self.base_lr)
            if self.base_wd is not None:
                defaults['weight_decay'] = self.base_wd
            params[:] = merge_param_groups(params, defaults)
