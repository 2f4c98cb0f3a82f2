"""mmengine hooks that make runs resume exactly and stop them with a clear message.

tools/train.py adds ``RNGStateHook``, ``StopOnNonFiniteLossHook`` and ``CheckDatasetsHook`` to
every run, and ``AmpOverflowHook`` to ``--amp`` runs (``MeanLossAcrossRanksHook`` is for
comparing runs on different numbers of GPUs); other configs can name them in
``custom_hooks`` once ``mmvminet`` is imported. Our segmentation configs name
``FastDecodeHeadLossHook``, our detection configs ``FastDetTrainHook``; ``tools/train.py
--compile-backbone`` adds ``CompileBackboneHook``.
"""
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from .errors import DatasetError, NonFiniteLossError, ReportableError


def get_rng_state() -> dict:
    """The global RNG states that data augmentation and drop path draw from."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())  # resume maps checkpoints onto the GPU
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


class _RestoreRNGAfter:
    """The train loop's data iterator, restoring ``state`` once ``skip`` batches were drawn."""

    def __init__(self, iterator, skip: int, state: dict):
        self.iterator, self.skip, self.state = iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip == 0 and self.state is not None:
            set_rng_state(self.state)
            self.state = None
        self.skip -= 1
        return next(self.iterator)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the global RNG states in each checkpoint; on resume, restore them where they were.

    mmengine restores weights, optimizer, schedulers and the sampler's position, but not the
    python/numpy/torch RNGs, so a resumed run draws other crops, flips and drop-path masks
    than an uninterrupted one. Two details make the restore exact:

    * ``IterBasedTrainLoop`` reaches its place in the data by drawing the already trained
      batches again, which with ``num_workers=0`` consumes the main process's RNG; the states
      are therefore restored after that replay, just before the first new batch is drawn.
    * validation creates a dataloader iterator (a torch draw) after a checkpoint is saved; its
      states are saved before and restored after, so validating consumes no training randomness.

    ``EpochBasedTrainLoop`` runs resume exactly from epoch-boundary checkpoints; mmengine restarts
    the epoch of a mid-epoch one, so those resume inexactly (a warning says so). Only rank 0's
    states are saved; with several ranks each restores rank 0's.
    """
    priority = 'VERY_HIGH'

    def __init__(self):
        self._loaded = None   # states of the checkpoint loaded, until training starts
        self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict):
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict):
        self._loaded = checkpoint.get('rng_state')

    def before_train(self, runner):
        state, self._loaded = self._loaded, None
        loop = runner.train_loop
        if state is None or loop.iter == 0:  # a fresh run, or load_from (fine-tuning)
            return
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreRNGAfter(loop.dataloader_iterator, loop.iter,
                                                        state)
            return
        if loop.iter != loop.epoch * len(loop.dataloader):
            print_log(f'resumed at iteration {loop.iter}, inside epoch {loop.epoch + 1}: mmengine '
                      'restarts that epoch, so this run will not match an uninterrupted one '
                      '(save checkpoints by epoch, or use IterBasedTrainLoop)',
                      logger='current', level=logging.WARNING)
        set_rng_state(state)

    def before_val(self, runner):
        self._before_val = get_rng_state()

    def after_val(self, runner):
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None


@HOOKS.register_module()
class StopOnNonFiniteLossHook(Hook):
    """Stop training at the first NaN or infinite loss, before the broken state is saved.

    It runs before ``CheckpointHook`` (priority ``ABOVE_NORMAL`` < ``VERY_LOW``), so the last
    checkpoint on disk stays the last good one; it also refuses to save non-finite weights,
    which a finite loss can be followed by (an infinite gradient).
    """
    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None):
        loss = (outputs or {}).get('loss')
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            self._stop(runner, f'loss is {float(torch.as_tensor(loss).sum())}')

    def before_save_checkpoint(self, runner, checkpoint: dict):
        for key, value in checkpoint['state_dict'].items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                self._stop(runner, f'weight {key!r} is not finite')

    @staticmethod
    def _stop(runner, what: str):
        last = runner.message_hub.get_info('last_ckpt')
        kept = (f'the last good checkpoint is {last}' if last else
                'no checkpoint had been saved yet')
        raise NonFiniteLossError(f'{what} at iteration {runner.iter + 1}; training stopped '
                                 f'without saving this state, {kept} (lower the learning rate, '
                                 'or clip gradients, before resuming)')


@HOOKS.register_module()
class MeanLossAcrossRanksHook(Hook):
    """Log each iteration's losses averaged over all processes, not rank 0's alone.

    Under DDP every process computes its losses on its share of the batch and mmengine logs
    rank 0's, the curve of one process of N. The average (one small all-reduce an iteration) is
    the whole batch's, so that curves of runs on different numbers of GPUs can be compared
    (tools/analysis/check_multi_gpu.py). ``HIGHEST`` priority: before ``RuntimeInfoHook``
    records the values for the logger.
    """
    priority = 'HIGHEST'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None):
        if not outputs or runner.world_size == 1:
            return
        keys = list(outputs)
        values = torch.tensor([float(outputs[k]) for k in keys], dtype=torch.float64)
        all_reduce(values, op='mean')  # moves it to the backend's device and back
        outputs.update(zip(keys, values.tolist()))


@HOOKS.register_module()
class AmpOverflowHook(Hook):
    """Count the fp16 steps that dynamic loss scaling skipped, as ``amp_overflow_steps``.

    ``GradScaler`` skips ``optimizer.step()`` when the gradients hold inf/NaN and then lowers
    its scale; a lower scale after an iteration is that skip. The count goes into the message
    hub, so the log line shows it, and into checkpoints with it.
    """
    priority = 'NORMAL'  # before LoggerHook writes the iteration's line

    def __init__(self):
        self.count = 0
        self._scale = None

    def before_train(self, runner):
        hub = runner.message_hub
        if 'train/amp_overflow_steps' in hub.log_scalars:  # resumed
            self.count = int(hub.get_scalar('train/amp_overflow_steps').current())

    def before_train_iter(self, runner, batch_idx: int, data_batch=None):
        self._scale = self._current_scale(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None):
        scale = self._current_scale(runner)
        if scale is not None and self._scale is not None and scale < self._scale:
            self.count += 1
        runner.message_hub.update_scalar('train/amp_overflow_steps', self.count)

    @staticmethod
    def _current_scale(runner) -> Optional[float]:
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        return None if scaler is None or not scaler.is_enabled() else float(scaler.get_scale())


@HOOKS.register_module()
class CheckDatasetsHook(Hook):
    """Stop before training or testing on a dataset with no samples, or with no annotated
    instance at all (a detection train set whose annotation file lists images only)."""
    priority = 'VERY_HIGH'

    def before_train(self, runner):
        dataset = runner.train_dataloader.dataset
        self._check_not_empty(dataset, 'train_dataloader')
        # detection data infos list their 'instances'; stops at the first annotated image
        if 'instances' in dataset.get_data_info(0) and not any(
                dataset.get_data_info(i)['instances'] for i in range(len(dataset))):
            raise DatasetError(f'train_dataloader: {describe_dataset(dataset)} has '
                               f'{len(dataset)} images but no annotated instance in any')

    def before_val(self, runner):
        self._check_not_empty(runner.val_dataloader.dataset, 'val_dataloader')

    def before_test(self, runner):
        self._check_not_empty(runner.test_dataloader.dataset, 'test_dataloader')

    @staticmethod
    def _check_not_empty(dataset, name: str):
        if len(dataset) == 0:
            raise DatasetError(f'{name}: {describe_dataset(dataset)} has no samples'
                               f'{filter_note(dataset)}')


@HOOKS.register_module()
class FastDecodeHeadLossHook(Hook):
    """For the run, mmseg decode heads compute their loss with ``mmvminet.seg_loss``'s
    ``resize`` (a fast backward for upsampling) and ``accuracy`` (top-1 by argmax): the same
    losses and scores, in less time (docs/benchmarks.md)."""
    priority = 'VERY_HIGH'

    def before_run(self, runner):
        from .seg_loss import use_fast_decode_head_ops  # imports mmseg: only when used
        use_fast_decode_head_ops(True)

    def after_run(self, runner):
        from .seg_loss import use_fast_decode_head_ops
        use_fast_decode_head_ops(False)


@HOOKS.register_module()
class FastDetTrainHook(Hook):
    """For the run, mmdet's Mask R-CNN mask heads (``FCNMaskHead`` and its subclasses) compute
    their targets with ``mmvminet.det_targets.mask_target`` (on the device, no host round trip),
    ``MaxIoUAssigner`` assigns with ``det_targets.assign_wrt_overlaps`` (no host sync),
    ``AnchorGenerator`` reuses its anchors for repeated feature-map sizes and ``RPNHead`` makes
    the batch's proposals at once (``mmvminet.det_rpn``): the same targets, assignments and
    proposals (docs/benchmarks.md). Our detection configs name it."""
    priority = 'VERY_HIGH'

    def before_run(self, runner):
        from .det_targets import use_fast_det_train  # imports mmdet: only when used
        use_fast_det_train(True)

    def after_run(self, runner):
        from .det_targets import use_fast_det_train
        use_fast_det_train(False)


def compiled_part(model, with_neck: bool):
    """``(owner, name)`` of the bound method that compiling the backbone replaces: the
    backbone's ``forward``, or with the neck the model's ``extract_feat`` (backbone and neck,
    as mmdet's and mmseg's models call them for their feature maps)."""
    return (model, 'extract_feat') if with_neck else (model.backbone, 'forward')


@HOOKS.register_module()
class CompileBackboneHook(Hook):
    """Train with the model's backbone compiled by ``torch.compile`` (static shapes).

    ``mode='reduce-overhead'`` (the default) replays the compiled forward and backward as CUDA
    graphs, so the backbone costs the host no kernel launches (docs/benchmarks.md has UperNet's
    steps with it, on an H200); ``'default'`` compiles without graphs. ``with_neck=True``
    compiles the model's ``extract_feat`` instead, the backbone and the neck in one graph (mmdet's
    and mmseg's models call it for their feature maps), so the neck's launches go too. Only
    training calls take the compiled path: in eval mode or without grad (validation, testing,
    whose image sizes vary) the backbone runs eagerly. Every new input shape compiles (and
    records) once more, so this pays off where training batches have one shape (UperNet's
    crops), not with keep-ratio detection batches. The checkpoint is unchanged: only the bound
    ``forward`` (or ``extract_feat``) is replaced."""
    priority = 'VERY_LOW'  # after everything that edits or replaces the model before training
    MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')

    def __init__(self, mode: str = 'reduce-overhead', with_neck: bool = False):
        if mode not in self.MODES:
            raise ValueError(f'CompileBackboneHook: mode {mode!r} is not one of {self.MODES}')
        self.mode = mode
        self.with_neck = with_neck

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, torch.nn.Module):
            raise ReportableError(f'CompileBackboneHook: {type(model).__name__} has no '
                                  '`backbone` module to compile')
        if self.with_neck and not (isinstance(getattr(model, 'neck', None), torch.nn.Module)
                                   and callable(getattr(model, 'extract_feat', None))):
            raise ReportableError(f'CompileBackboneHook: with_neck=True needs a model with a '
                                  f'`neck` and `extract_feat`; {type(model).__name__} has not')
        owner, name = compiled_part(model, self.with_neck)
        eager = getattr(owner, name)
        compiled = torch.compile(eager, dynamic=False, mode=self.mode)

        def call(*args, **kwargs):
            if backbone.training and torch.is_grad_enabled():
                return compiled(*args, **kwargs)
            return eager(*args, **kwargs)

        setattr(owner, name, call)
        what = (f'{type(backbone).__name__} and {type(model.neck).__name__} (extract_feat)'
                if self.with_neck else type(backbone).__name__)
        print_log(f'CompileBackboneHook: {what} compiled for training '
                  f"(torch.compile mode '{self.mode}'; the first steps compile)",
                  logger='current')


def describe_dataset(dataset) -> str:
    """``CocoDataset (ann_file '...')``, naming what the user would check."""
    while hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset...
        dataset = dataset.dataset
    ann_file = getattr(dataset, 'ann_file', None)
    where = (f"ann_file {ann_file!r}" if ann_file else
             f"data_prefix {getattr(dataset, 'data_prefix', None)!r}")
    return f'{type(dataset).__name__} ({where})'


def filter_note(dataset) -> str:
    while hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    filter_cfg = getattr(dataset, 'filter_cfg', None)
    return f' after filter_cfg={filter_cfg}' if filter_cfg else ''
