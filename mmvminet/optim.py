"""An optimizer constructor that gives the optimizer a few parameter groups instead of hundreds.

With a ``paramwise_cfg`` (no weight decay on norms and biases, a backbone lr multiplier),
mmengine's ``DefaultOptimWrapperConstructor`` makes one parameter group per parameter: 394 for
Mask R-CNN VMINet-S, 411 for UperNet VMINet-S. PyTorch's optimizers step group by group in Python,
each group with its own kernel launches, so a step's host time grows with the number of groups.
``MergedGroupsOptimWrapperConstructor`` builds the same groups and then merges those whose options
(lr, weight decay, ...) are equal. Each parameter is updated from its own group's options only,
so every update is the same; only the number of groups, and with it the optimizer's state-dict
layout, changes (a checkpoint saved with one constructor does not resume with the other).
"""
from typing import Dict, List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[Dict]) -> List[Dict]:
    """One group per distinct set of options, in order of first appearance, each holding the
    parameters of the groups it replaces in their order."""
    merged = {}
    for group in groups:
        options = {k: v for k, v in group.items() if k != 'params'}
        # repr: exact for the floats, bools and tuples that group options hold, and hashable
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in merged:
            merged[key] = dict(options, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` whose per-parameter groups are merged by options.

    Use it as ``optim_wrapper = dict(constructor='MergedGroupsOptimWrapperConstructor', ...)``
    with the same ``paramwise_cfg`` as the default constructor.
    """

    def add_params(self, params: List[Dict], module, prefix: str = '', is_dcn_module=None):
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the outermost call: every submodule's groups are in ``params``
            params[:] = merge_param_groups(params)
