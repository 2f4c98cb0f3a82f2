"""Training-step time and peak memory of dense models: VMINet-S against Swin-T, in one process.

    python tools/analysis/benchmark_dense.py [--models all|NAMES] [--steps 30] [--warmup 10]
        [--det-shape 800 1333] [--seg-shape 512 512] [--batch 2] [--device cuda|cpu]
        [--channels-last] [--backbone-modes eager,compile,cudagraph] [--compile-backbone]
        [--merge-param-groups] [--det-paths mmdet,fast] [--no-train] [--no-infer]
        [--profile-steps 0]
        [--out dense_benchmark.json]

Models (--models, comma separated): mask_rcnn_vminet_s (configs/mask_rcnn_vminet_s_1x.py) and
mask_rcnn_swin_t (mmdet's swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py), 2 images of 800x1333 with
fp16 AMP; upernet_vminet_s (configs/upernet_vminet_s_160k_ade20k.py) and upernet_swin_t (mmseg's
swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py), 2 images of 512x512
with bf16 autocast. Every model is built from its config with pretrained weights off and SyncBN
reverted to BN (one device, no DDP).

--backbone-modes (comma separated; default eager) says how every model's backbone, ours and Swin-T
alike, runs; each model is measured once per mode, one row each: 'eager'; 'compile'
(torch.compile, static shapes); 'cudagraph' (torch.compile's 'reduce-overhead' mode: the compiled
forward and backward are replayed as CUDA graphs, so the backbone costs the host no launches);
'cudagraph_neck' (the same for the model's ``extract_feat``: backbone and neck in one graph, as
``CompileBackboneHook(with_neck=True)`` trains). The heads, whose shapes depend on the data, stay
eager. --compile-backbone is short for
--backbone-modes compile.

A training step is what mmengine's runner does per iteration: ``model.train_step`` (data
preprocessor, forward in loss mode, backward, optimizer step) with the optimizer wrapper built
from the config's own ``optim_wrapper`` (AdamW and its paramwise settings), made an
``AmpOptimWrapper`` of the task's dtype (fp16 with dynamic loss scaling; bf16 without);
--merge-param-groups builds every model's optimizer with mmvminet's
``MergedGroupsOptimWrapperConstructor`` (a few parameter groups instead of one per parameter:
less host time per step), Swin-T's too, where by default each config's own constructor is used
(VMINet's configs name that one, mmdet's and mmseg's Swin-T configs the default). Each row says
how many groups its optimizer had (``param_groups``). --det-paths (comma separated; default mmdet)
measures every detector once per path, one row each: 'mmdet' (mmdet's own code) and 'fast' (what
``mmvminet.hooks.FastDetTrainHook`` changes, as our detection configs train; Swin-T's too); a
'fast' row's ``train_speedup_vs_mmdet_path`` is the same model and mode's 'mmdet' step over its
own. Inference
is ``model.test_step`` on the same batch under ``torch.no_grad`` and the same autocast dtype.
Inputs are synthetic: random images, a few random boxes and masks per image (mmdet's
``demo_mm_inputs``) or random label maps. Each timing is per step (CUDA events; time.perf_counter
on CPU) after --warmup steps, reported as median and p90; peak CUDA memory is
``torch.cuda.max_memory_allocated`` since the phase began (weights, gradients and optimizer state
included). On CPU everything runs in fp32 (AmpOptimWrapper needs an accelerator): for smoke tests.

After the training steps, the backbone alone is timed the same way on the step's own
preprocessed batch: forward, and backward from the mean of its outputs, under the task's autocast
(``train_backbone_ms``, the backbone and neck together in 'cudagraph_neck' mode; a failure
there is a 'backbone' error and keeps the step's timings). The rest of the step
(``train_rest_ms``: the step's median less the backbone's) is what no backbone can make
faster: data to the device, neck, heads, target assignment, losses, optimizer.
``train_free_backbone_speedup_vs_swin`` is Swin-T's step over that rest: the most any backbone
could give in this model and mode.

--profile-steps N runs N more training steps under torch.profiler after the timed ones and keeps
the kernels that took the most device time (CPU: operators and CPU time) in the row's
``train_profile``: name, ms per step and share of the profiled kernel time, to say where a step
goes.

Prints one markdown table (with speed-up and memory fraction against the Swin-T of the same task
and backbone mode) and, with more than one mode, the best mode of each model against Swin-T's best;
writes the rows, that ``best`` list and an ``env`` block (device, versions, exact command) to
--out. A failure (an OOM, a missing config, a mode that does not compile) is recorded in its row,
never fatal.
"""
import argparse
import contextlib
import math
import os.path as osp
import shlex
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmengine.config import Config  # noqa: E402

from mmvminet.hooks import compiled_part  # noqa: E402
from mmvminet.registry import build_model  # noqa: E402
from mmvminet.runner_utils import load_config  # noqa: E402
from tools.analysis.benchmark import environment as classification_environment  # noqa: E402
from tools.analysis.benchmark import (comma_list, fmt, profile_steps,  # noqa: E402
                                      release_memory, write_json)

SCRIPT = 'tools/analysis/benchmark_dense.py'
GIB = 2**30
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclass(frozen=True)
class DenseSpec:
    """A model to benchmark: table name, task ('det' or 'seg') and config.

    ``config`` is relative to the repository, or ``pkg::path`` inside an installed package's
    shipped configs (``pkg/.mim/configs/path``).
    """
    name: str
    task: str
    config: str


SPECS = {
    'mask_rcnn_vminet_s': DenseSpec('Mask R-CNN VMINet-S', 'det',
                                    'configs/mask_rcnn_vminet_s_1x.py'),
    'mask_rcnn_swin_t': DenseSpec('Mask R-CNN Swin-T', 'det',
                                  'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'),
    'upernet_vminet_s': DenseSpec('UperNet VMINet-S', 'seg',
                                  'configs/upernet_vminet_s_160k_ade20k.py'),
    'upernet_swin_t': DenseSpec(
        'UperNet Swin-T', 'seg',
        'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'),
}
#: task -> key of the model every other model of that task is compared with
BASELINES = {'det': 'mask_rcnn_swin_t', 'seg': 'upernet_swin_t'}
#: task -> autocast dtype on CUDA (Mask R-CNN: mmcv's RoIAlign has no bf16 kernel)
TASK_DTYPES = {'det': 'fp16', 'seg': 'bf16'}
#: --backbone-modes -> torch.compile mode (None: eager)
BACKBONE_MODES = {'eager': None, 'compile': 'default', 'cudagraph': 'reduce-overhead',
                  'cudagraph_neck': 'reduce-overhead'}
#: the --backbone-modes that compile the model's extract_feat (backbone and neck), not the backbone
WITH_NECK = {'cudagraph_neck'}
#: --det-paths -> whether the detectors train with FastDetTrainHook's changes
DET_PATHS = {'mmdet': False, 'fast': True}


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='all',
                        help=f'all, or some of {",".join(SPECS)} (default: all)')
    parser.add_argument('--steps', type=int, default=30, help='timed steps (default 30)')
    parser.add_argument('--warmup', type=int, default=10,
                        help='untimed steps first (default 10; they also settle the fp16 loss '
                        'scale and cudnn.benchmark)')
    parser.add_argument('--batch', type=int, default=2, help='images per step (default 2)')
    parser.add_argument('--det-shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'), help='Mask R-CNN image size (default 800 1333)')
    parser.add_argument('--seg-shape', type=int, nargs=2, default=[512, 512],
                        metavar=('H', 'W'), help='UperNet image (and crop) size (default 512 512)')
    parser.add_argument('--device', choices=['cuda', 'cpu'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--channels-last', action='store_true',
                        help='model weights in channels_last (inputs stay as the data '
                        'preprocessor makes them)')
    parser.add_argument('--backbone-modes', default=None,
                        help='how every backbone runs, comma separated, one row per model and '
                        f'mode: some of {",".join(BACKBONE_MODES)} (default eager)')
    parser.add_argument('--compile-backbone', action='store_true',
                        help='short for --backbone-modes compile')
    parser.add_argument('--merge-param-groups', action='store_true',
                        help="every model's optimizer with MergedGroupsOptimWrapperConstructor "
                        "(default: each config's own constructor)")
    parser.add_argument('--fast-seg-loss', action='store_true',
                        help="every segmentor's decode heads with mmvminet.seg_loss's resize "
                        "and accuracy, Swin-T's too (as FastDecodeHeadLossHook does in our "
                        "configs; default: mmseg's own)")
    parser.add_argument('--det-paths', default='mmdet',
                        help="how every detector trains, comma separated, one row per model, "
                        "mode and path: some of mmdet (mmdet's own code), fast "
                        "(FastDetTrainHook's changes) (default mmdet)")
    parser.add_argument('--no-train', dest='train', action='store_false',
                        help='skip the training step')
    parser.add_argument('--no-infer', dest='infer', action='store_false',
                        help='skip inference (predict mode)')
    parser.add_argument('--profile-steps', type=int, default=0,
                        help='profile this many more training steps (default 0: none)')
    parser.add_argument('--out', default='dense_benchmark.json', help='JSON of rows + env')
    args = parser.parse_args(argv)

    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but no CUDA device is available')
    if args.compile_backbone and args.backbone_modes is not None:
        parser.error('--compile-backbone is short for --backbone-modes compile: give one of them')
    modes = 'compile' if args.compile_backbone else (args.backbone_modes or 'eager')
    try:
        args.models = (list(SPECS) if args.models.strip().lower() == 'all'
                       else comma_list(args.models, SPECS, '--models'))
        args.backbone_modes = list(dict.fromkeys(comma_list(modes, BACKBONE_MODES,
                                                            '--backbone-modes')))
        args.det_paths = list(dict.fromkeys(comma_list(args.det_paths, DET_PATHS,
                                                       '--det-paths')))
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.models or not args.backbone_modes or not args.det_paths:
        parser.error('--models, --backbone-modes and --det-paths need at least one entry')
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.profile_steps < 0:
        parser.error('--steps and --batch need at least 1, --warmup and --profile-steps at '
                     'least 0')
    if not (args.train or args.infer):
        parser.error('--no-train and --no-infer leave nothing to measure')
    return args


# ----------------------------------------------------------------------------------------------
# Configs and models
# ----------------------------------------------------------------------------------------------
def resolve_config(config: str) -> str:
    """Absolute path of a ``DenseSpec.config``; FileNotFoundError saying what to install."""
    if '::' not in config:
        return str(ROOT / config)
    package, rel = config.split('::', 1)
    from mmengine.utils import get_installed_path
    try:
        base = get_installed_path(package)
    except Exception as exc:  # noqa: BLE001  (whatever the lookup raises means "not installed")
        raise FileNotFoundError(f'{package} is not installed, so its config {rel} cannot be '
                                f'loaded ({type(exc).__name__}: {exc})') from exc
    path = osp.join(base, '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{package} config {rel} not found at {path}: install a '
                                f'{package} wheel that ships its configs (pip install {package}; '
                                'an editable source checkout without .mim has none)')
    return path


def precision(task: str, device: str) -> str:
    return TASK_DTYPES[task] if device == 'cuda' else 'fp32'


def prepare_config(cfg: Config, task: str, args) -> Config:
    """Fit a training config to this benchmark (edits ``cfg`` in place and returns it)."""
    model = cfg.model
    model.backbone.init_cfg = None  # no pretrained weights: nothing to download or load
    if 'pretrained' in model:
        model.pretrained = None
    if task == 'seg':
        # the preprocessor pads every image to this size (the training crop)
        model.data_preprocessor.size = tuple(args.seg_shape)
    else:
        # random weights score almost nothing above 0.05: keep 100 detections per image (as a
        # trained model on COCO does) so that box/mask post-processing costs the same for all
        model.test_cfg.rcnn.score_thr = 0.0

    wrapper = {k: v for k, v in cfg.optim_wrapper.items()
               if k not in ('type', 'dtype', 'loss_scale')}
    dtype = precision(task, args.device)
    if dtype == 'fp32':  # AmpOptimWrapper refuses to run without an accelerator
        wrapper['type'] = 'OptimWrapper'
    else:
        wrapper.update(type='AmpOptimWrapper', dtype=str(DTYPES[dtype]).removeprefix('torch.'),
                       # bf16 has fp32's range: no loss scaling, as is usual
                       loss_scale='dynamic' if dtype == 'fp16' else dict(enabled=False))
    if args.merge_param_groups:
        wrapper['constructor'] = 'MergedGroupsOptimWrapperConstructor'
    cfg.optim_wrapper = wrapper
    return cfg


def num_classes(cfg: Config, task: str) -> int:
    if task == 'det':
        return cfg.model.roi_head.bbox_head.num_classes
    return cfg.model.decode_head.num_classes


def build(cfg: Config, args, mode: str = 'eager'):
    """The config's model with fresh weights, BN for SyncBN, on the device, in train mode, its
    backbone run as ``mode`` (a key of BACKBONE_MODES) says."""
    from mmengine.model import revert_sync_batchnorm
    torch.manual_seed(0)  # every model starts from the same random state
    model = build_model(cfg.model, cfg.default_scope)
    model.init_weights()
    model = revert_sync_batchnorm(model).to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if BACKBONE_MODES[mode] is not None:
        # the bound method, not the module: state-dict keys and the heads stay as they are
        owner, name = compiled_part(model, with_neck=mode in WITH_NECK)
        setattr(owner, name, torch.compile(getattr(owner, name), dynamic=False,
                                           mode=BACKBONE_MODES[mode]))
    return model.train()


def build_optimizer(model, cfg: Config):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return build_optim_wrapper(model, cfg.optim_wrapper)


def count_params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# ----------------------------------------------------------------------------------------------
# Synthetic batches (CPU tensors, as a dataloader yields them)
# ----------------------------------------------------------------------------------------------
def det_batch(shape, batch: int, classes: int, boxes: int = 5) -> Dict:
    """``batch`` uint8 images with ``boxes`` random boxes, labels and bitmap masks each."""
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=batch, image_shapes=(3, *shape), num_items=[boxes] * batch,
                          num_classes=classes, with_mask=True)


def seg_batch(shape, batch: int, classes: int) -> Dict:
    """``batch`` uint8 images with uniformly random label maps."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    h, w = shape
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
        # the metainfo a test pipeline gives; training's preprocessor sets its own
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w), padding_size=[0, 0, 0, 0]))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, h, w), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
def warm_up(fn: Callable[[], object], steps: int):
    for _ in range(steps):
        fn()


def time_steps(fn: Callable[[], object], steps: int, device: str) -> List[float]:
    """Milliseconds of each of ``steps`` calls (CUDA events on the GPU's own timeline)."""
    if device != 'cuda':
        times = []
        for _ in range(steps):
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
        return times
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(steps)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def summarize(times: List[float], batch: int) -> Dict:
    """Median and p90 milliseconds, images per second at the median."""
    median = statistics.median(times)
    p90 = statistics.quantiles(times, n=10, method='inclusive')[-1] if len(times) > 1 \
        else times[0]
    return dict(ms=median, p90_ms=p90, img_s=batch / median * 1e3)


def reset_peak(device: str):
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> Optional[float]:
    return torch.cuda.max_memory_allocated() / GIB if device == 'cuda' else None


def autocast(task: str, device: str):
    dtype = precision(task, device)
    if dtype == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=DTYPES[dtype])


def loss_scale(optim_wrapper) -> Optional[float]:
    scaler = getattr(optim_wrapper, 'loss_scaler', None)
    return scaler.get_scale() if scaler is not None and scaler.is_enabled() else None


def measure_train(model, data, cfg: Config, args) -> Dict:
    """Training-step timings and peak memory; the optimizer state is freed afterwards."""
    reset_peak(args.device)
    optim_wrapper = build_optimizer(model, cfg)
    step = lambda: model.train_step(data, optim_wrapper)  # noqa: E731
    warm_up(step, args.warmup)
    # the dynamic fp16 loss scale halves at each skipped optimizer step (and grows only after
    # 2000 good ones): its fall while timed counts the skipped steps
    scale_before = loss_scale(optim_wrapper)
    times = time_steps(step, args.steps, args.device)
    scale_after = loss_scale(optim_wrapper)
    result = {f'train_{k}': v for k, v in summarize(times, args.batch).items()}
    result['train_peak_gib'] = peak_gib(args.device)
    result['param_groups'] = len(optim_wrapper.optimizer.param_groups)
    result['train_skipped_steps'] = (max(0, round(math.log2(scale_before / scale_after)))
                                     if scale_before else 0)
    if args.profile_steps:
        result['train_profile'] = profile_steps(step, args.profile_steps, args.device)
    return result


def measure_backbone(model, data, task: str, args, with_neck: bool = False) -> Dict:
    """The backbone's share of a training step on ``data`` (with the neck: the model's
    ``extract_feat``), timed alone: forward on the preprocessed batch (N, 3, H, W) under the
    task's autocast, backward from the mean of its outputs (each (N, C_i, H_i, W_i)), gradients
    dropped after each step as the optimizer's ``zero_grad`` does (a compiled backbone's
    gradients may live in CUDA-graph memory that the next replay overwrites)."""
    with torch.no_grad():
        inputs = model.data_preprocessor(data, training=True)['inputs']
    features = model.extract_feat if with_neck else model.backbone

    def step():
        with autocast(task, args.device):
            outputs = features(inputs)
        sum(out.float().mean() for out in outputs).backward()
        model.zero_grad(set_to_none=True)

    warm_up(step, args.warmup)
    return dict(train_backbone_ms=statistics.median(time_steps(step, args.steps, args.device)))


def measure_infer(model, data, task: str, args) -> Dict:
    """Predict-mode timings (``test_step``, no grad, the task's autocast) and peak memory."""
    model.eval()
    reset_peak(args.device)

    def step():
        with torch.no_grad(), autocast(task, args.device):
            return model.test_step(data)

    warm_up(step, args.warmup)
    times = time_steps(step, args.steps, args.device)
    result = {f'infer_{k}': v for k, v in summarize(times, args.batch).items()}
    result['infer_peak_gib'] = peak_gib(args.device)
    return result


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------
def error_text(phase: str, exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()
    return f'{phase}: {type(exc).__name__}' + (f': {detail[0][:300]}' if detail else '')


def benchmark_model(key: str, mode: str, args, det_path: Optional[str] = None) -> Dict:
    """One row: the model's training and inference measurements with its backbone run as
    ``mode`` (a detector's training as ``det_path``, a key of DET_PATHS, says), or the error
    that stopped one."""
    from mmvminet.det_targets import use_fast_det_train
    spec = SPECS[key]
    shape = args.det_shape if spec.task == 'det' else args.seg_shape
    row = dict(key=key, model=spec.name, task=spec.task, config=spec.config,
               precision=precision(spec.task, args.device), batch=args.batch, shape=list(shape),
               backbone=mode, det_path=det_path if spec.task == 'det' else None, params_m=None,
               param_groups=None, cudnn_benchmark=None, errors=[])
    # the same keys in every row, None where a phase was skipped or failed
    row.update({f'{phase}_{k}': None for phase in ('train', 'infer')
                for k in ('ms', 'p90_ms', 'img_s', 'peak_gib')}, train_skipped_steps=None,
               train_backbone_ms=None, train_rest_ms=None)
    errors = row['errors']
    model = data = cfg = None
    try:
        cfg = prepare_config(load_config(resolve_config(spec.config)), spec.task, args)
        model = build(cfg, args, mode)
        row['params_m'] = round(count_params(model), 3)
        make_batch = det_batch if spec.task == 'det' else seg_batch
        data = make_batch(shape, args.batch, num_classes(cfg, spec.task))
    except Exception as exc:  # noqa: BLE001  (a failure is data, not a reason to stop)
        errors.append(error_text('build', exc))
        traceback.print_exc(file=sys.stderr)
    if not errors:
        # each library's own runtime setting (mmdet: off, mmseg: on), as its training would use
        row['cudnn_benchmark'] = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
        torch.backends.cudnn.benchmark = row['cudnn_benchmark'] and args.device == 'cuda'
        phases = [('train', lambda: measure_train(model, data, cfg, args)),
                  ('backbone', lambda: measure_backbone(model, data, spec.task, args,
                                                        with_neck=mode in WITH_NECK))
                  ] if args.train else []
        if args.infer:
            phases.append(('infer', lambda: measure_infer(model, data, spec.task, args)))
        use_fast_det_train(DET_PATHS.get(row['det_path'], False))
        try:
            for phase, run in phases:
                try:
                    row.update(run())
                except Exception as exc:  # noqa: BLE001
                    errors.append(error_text(phase, exc))
                    traceback.print_exc(file=sys.stderr)
                # after the except block, whose traceback holds tensors; gradients go too
                model.zero_grad(set_to_none=True)
                release_memory(args.device)
        finally:
            use_fast_det_train(False)
        if row['train_ms'] and row['train_backbone_ms']:
            row['train_rest_ms'] = row['train_ms'] - row['train_backbone_ms']
    del model, data
    release_memory(args.device)
    return row


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return numerator / denominator if numerator and denominator else None


def add_ratios(rows: List[Dict]):
    """Against the Swin-T of the same task, backbone mode and detector path: speed-up (its ms /
    ours), memory (ours / its) and the speed-up a backbone that took no time would give (its ms
    / our rest); a 'fast' detector row against its own 'mmdet' row (``vs_mmdet_path``)."""
    by_key = {(r['key'], r['backbone'], r['det_path']): r for r in rows}
    for row in rows:
        base = by_key.get((BASELINES[row['task']], row['backbone'], row['det_path']), {})
        own = by_key.get((row['key'], row['backbone'], 'mmdet'), {})
        row['train_speedup_vs_mmdet_path'] = (ratio(own.get('train_ms'), row.get('train_ms'))
                                              if row['det_path'] == 'fast' else None)
        for phase in ('train', 'infer'):
            row[f'{phase}_speedup_vs_swin'] = ratio(base.get(f'{phase}_ms'), row.get(f'{phase}_ms'))
            row[f'{phase}_mem_vs_swin'] = ratio(row.get(f'{phase}_peak_gib'),
                                                base.get(f'{phase}_peak_gib'))
        row['train_free_backbone_speedup_vs_swin'] = ratio(base.get('train_ms'),
                                                           row.get('train_rest_ms'))


def best_vs_best(rows: List[Dict]) -> List[Dict]:
    """Each model's fastest training step over the backbone modes (and detector paths) it ran
    in, against the fastest of its task's Swin-T: speed-up (its ms / ours) and memory (ours /
    its), and the modes Swin-T's step was measured in (best against best only if they are the
    model's)."""
    best, measured = {}, {}
    for row in rows:
        if row.get('train_ms'):
            measured.setdefault(row['key'], []).append(
                row['backbone'] + (f"/{row['det_path']}" if row['det_path'] else ''))
            if row['key'] not in best or row['train_ms'] < best[row['key']]['train_ms']:
                best[row['key']] = row
    result = []
    for key, row in best.items():
        base_key = BASELINES[row['task']]
        base = best.get(base_key, {})
        result.append(dict(key=key, model=row['model'], backbone=row['backbone'],
                           det_path=row['det_path'],
                           train_ms=row['train_ms'], train_peak_gib=row['train_peak_gib'],
                           speedup_vs_swin=ratio(base.get('train_ms'), row['train_ms']),
                           mem_vs_swin=ratio(row['train_peak_gib'], base.get('train_peak_gib')),
                           swin_backbone=base.get('backbone'), swin_det_path=base.get('det_path'),
                           swin_modes_measured=measured.get(base_key, [])))
    return result


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def markdown_table(rows: List[Dict]) -> str:
    header = ['model', 'task', 'dtype', 'backbone', 'det path', 'params M', 'param groups',
              'train ms (p90)', 'train img/s', 'train peak GiB', 'train speed-up vs Swin-T',
              'train speed-up vs mmdet path', 'train mem vs Swin-T',
              'backbone fwd+bwd ms', 'rest of step ms', 'speed-up vs Swin-T, free backbone',
              'infer ms (p90)', 'infer img/s', 'infer peak GiB', 'infer speed-up vs Swin-T',
              'errors']
    lines = []
    for r in rows:
        cells = [r['model'], r['task'], r['precision'], r['backbone'], fmt(r['det_path']),
                 fmt(r['params_m'], 2), fmt(r.get('param_groups'))]
        for phase in ('train', 'infer'):
            timed = r.get(f'{phase}_ms') is not None
            cells += [f'{fmt(r.get(f"{phase}_ms"))} ({fmt(r.get(f"{phase}_p90_ms"))})'
                      if timed else '-', fmt(r.get(f'{phase}_img_s'), 2),
                      fmt(r.get(f'{phase}_peak_gib'), 2),
                      fmt(r.get(f'{phase}_speedup_vs_swin'), 2)
                      + ('x' if r.get(f'{phase}_speedup_vs_swin') else '')]
            if phase == 'train':
                bound = r.get('train_free_backbone_speedup_vs_swin')
                vs_mmdet = r.get('train_speedup_vs_mmdet_path')
                cells += [fmt(vs_mmdet, 2) + ('x' if vs_mmdet else ''),
                          fmt(r.get('train_mem_vs_swin'), 2), fmt(r.get('train_backbone_ms')),
                          fmt(r.get('train_rest_ms')), fmt(bound, 2) + ('x' if bound else '')]
        # 'phase: ErrorType' of each failure; the messages are in the JSON
        cells.append(', '.join(': '.join(e.split(': ')[:2]) for e in r['errors']))
        lines.append(cells)
    return markdown(header, lines)


def markdown(header: List[str], lines: List[List[str]]) -> str:
    return '\n'.join('| ' + ' | '.join(line) + ' |'
                     for line in [header, ['---'] * len(header)] + lines)


def best_table(best: List[Dict]) -> str:
    header = ['model', 'fastest backbone mode (det path)', 'train ms', 'train peak GiB',
              "speed-up vs Swin-T's fastest", "mem vs Swin-T's fastest",
              "Swin-T's fastest mode (of those measured)"]
    lines = [[b['model'], b['backbone'] + (f" ({b['det_path']})" if b['det_path'] else ''),
              fmt(b['train_ms']), fmt(b['train_peak_gib'], 2),
              fmt(b['speedup_vs_swin'], 2) + ('x' if b['speedup_vs_swin'] else ''),
              fmt(b['mem_vs_swin'], 2),
              f"{fmt(b['swin_backbone'])} (of {', '.join(b['swin_modes_measured'])})"
              if b['swin_modes_measured'] else '-'] for b in best]
    return markdown(header, lines)


def environment(args, argv: List[str]) -> Dict:
    """The classification benchmark's ``env`` block with the OpenMMLab versions and the command."""
    import mmcv
    import mmengine
    env = classification_environment(args)
    del env['timm']  # not used here
    del env['cudnn_benchmark']  # each model's own setting: in its row
    env.update(command=shlex.join(['python', SCRIPT] + argv), argv=argv,
               mmengine=mmengine.__version__, mmcv=mmcv.__version__)
    for package in ('mmdet', 'mmseg'):
        try:
            env[package] = __import__(package).__version__
        except ImportError:
            env[package] = None
    return env


def run_all(runs: List[Tuple[str, str, Optional[str]]], results: Dict, args):
    """Benchmark each (model key, backbone mode, detector path) of ``runs`` into ``results``,
    written to ``args.out`` after each row."""
    for i, (key, mode, det_path) in enumerate(runs, 1):
        begin = time.perf_counter()
        row = benchmark_model(key, mode, args, det_path)
        results['rows'].append(row)
        add_ratios(results['rows'])
        results['best'] = best_vs_best(results['rows'])
        write_json(args.out, results)  # partial results survive a crash later on
        label = mode + (f', {det_path} path' if det_path else '')
        print(f'[{i}/{len(runs)}] {row["model"]} ({label}) done in '
              f'{time.perf_counter() - begin:.1f} s: train {fmt(row.get("train_ms"))} ms (backbone '
              f'{fmt(row.get("train_backbone_ms"))} ms), '
              f'infer {fmt(row.get("infer_ms"))} ms'
              + ''.join(f'\n    ! {e}' for e in row['errors']), flush=True)
        for kernel in row.get('train_profile') or []:
            print(f'    {kernel["ms_per_step"]:8.2f} ms/step {100 * kernel["share"]:5.1f}%  '
                  f'x{kernel["calls_per_step"]:<6g} {kernel["name"][:100]}', flush=True)


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> Dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # mmengine logs each parameter's optimizer options and init at INFO to its latest logger:
    # a new quiet one (a new name each call: an existing name would not be the latest)
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'benchmark_dense_{time.monotonic_ns()}', log_level='WARNING')
    results = dict(env=environment(args, argv), rows=[])
    runs = [(key, mode, path) for key in args.models for mode in args.backbone_modes
            for path in (args.det_paths if SPECS[key].task == 'det' else [None])]
    print(f'{len(runs)} runs ({len(args.models)} models x {len(args.backbone_modes)} backbone '
          f'modes, detectors x {len(args.det_paths)} paths) on '
          f'{results["env"]["device"]}', flush=True)
    if args.fast_seg_loss:
        from mmvminet.seg_loss import use_fast_decode_head_ops
        use_fast_decode_head_ops(True)
    try:
        run_all(runs, results, args)
    finally:
        if args.fast_seg_loss:
            use_fast_decode_head_ops(False)

    print(f'\n{results["env"]["device"]}; torch {torch.__version__}, mmcv '
          f'{results["env"]["mmcv"]}, mmdet {results["env"]["mmdet"]}, mmseg '
          f'{results["env"]["mmseg"]}; batch {args.batch}, det {args.det_shape[0]}x'
          f'{args.det_shape[1]}, seg {args.seg_shape[0]}x{args.seg_shape[1]}; medians of '
          f'{args.steps} steps after {args.warmup}\n')
    print(markdown_table(results['rows']))
    if (len(args.backbone_modes) > 1 or len(args.det_paths) > 1) and args.train:
        print('\nbest against best (training step):\n' + best_table(results['best']))
    errors = [f'{r["model"]}: {e}' for r in results['rows'] for e in r['errors']]
    if errors:
        print('\nerrors:\n  ' + '\n  '.join(errors))
    print(f'\nwrote {args.out}', flush=True)
    return results


if __name__ == '__main__':
    main()
