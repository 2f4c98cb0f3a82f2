"""Export a VMINet classifier (logits) or its backbone (feature maps) to ONNX, optionally
checking the graph against PyTorch with onnxruntime.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --shape H W [--dynamic]
        [--out FILE] [--backbone-only] [--softmax] [--fuse] [--opset N] [--verify]

The graph's input ``input`` is a (B, 3, H, W) float image normalised as the config's
data_preprocessor does (channel order and mean/std, written into the file's metadata). Outputs:
``logits`` (B, num_classes) (``probs`` with --softmax), or with --backbone-only one
``stage{i}`` (B, C_i, H/s_i, W/s_i) per returned stage. --dynamic frees B, H and W: VMI-SA's
alpha-grid resizing and mask depend on the feature map's size and are traced as ops of the input
shape. We use torch's TorchScript exporter (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which is not a dependency.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import sys
import warnings

import mmvminet  # noqa: F401  (fixes + registration)
import numpy as np
import torch
import torch.nn as nn
from mmengine.runner import load_checkpoint

from mmvminet.registry import build_model
from mmvminet.runner_utils import config_scope, default_work_dir, load_config


class Exportable(nn.Module):
    """The part of the model that is exported, as a function of one image batch.

    (B, 3, H, W) -> (logits (B, K), ) for a classifier, or the backbone's tuple of maps.
    """

    def __init__(self, model: nn.Module, backbone_only: bool, softmax: bool):
        super().__init__()
        self.model = model
        self.backbone_only = backbone_only
        self.softmax = softmax

    def forward(self, x):
        if self.backbone_only:
            return tuple(self.model.backbone(x))
        logits = self.model(x, mode='tensor')  # ImageClassifier: backbone -> neck -> head
        return (logits.softmax(-1) if self.softmax else logits, )


def load_model(cfg, checkpoint: str) -> nn.Module:
    """``cfg.model`` in eval mode on the CPU with the checkpoint's weights (all keys must match)."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint!r}')
    model = build_model(cfg.model, config_scope(cfg))
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    except pickle.UnpicklingError as e:
        raise ValueError(f'{checkpoint!r} is not a readable PyTorch checkpoint') from e
    except (RuntimeError, KeyError) as e:  # mmengine lists every mismatch: name the first
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise ValueError(f'checkpoint {checkpoint!r} does not fit {cfg.filename}: '
                         f'{"; ".join(lines[:2])}') from e
    return model.eval()


def output_names(model: nn.Module, backbone_only: bool, softmax: bool):
    if backbone_only:
        return [f'stage{i}' for i in model.backbone.out_indices]
    return ['probs' if softmax else 'logits']


def preprocessing(cfg) -> dict:
    """What the caller must do to an image before the graph (the data_preprocessor's job)."""
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    return dict(layout='NCHW float32', mean=pre.get('mean'), std=pre.get('std'),
                to_rgb=bool(pre.get('to_rgb', pre.get('bgr_to_rgb', False))))


def export(module: nn.Module, x: torch.Tensor, path: str, names, dynamic: bool, opset: int):
    """Trace ``module`` on ``x`` (B, 3, H, W) into ``path``."""
    axes = None
    if dynamic:
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in names:
            axes[name] = {0: 'batch'} if name in ('logits', 'probs') else \
                {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with warnings.catch_warnings():
        # VMINet.forward's input-size check compares traced sizes with a Python int: a
        # TracerWarning that only concerns that check (the graph keeps no branch for it)
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export')
        torch.onnx.export(module, (x, ), path, dynamo=False, opset_version=opset,
                          input_names=['input'], output_names=list(names), dynamic_axes=axes)


def write_metadata(path: str, meta: dict):
    import onnx
    graph = onnx.load(path)
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(graph, path)


def max_abs_diffs(path: str, inputs, references):
    """Largest |onnxruntime - PyTorch| over all outputs, per input: list of floats."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    diffs = []
    for x, refs in zip(inputs, references):
        outs = session.run(None, {'input': x.numpy()})
        diffs.append(max(float(np.abs(o - r.numpy()).max()) for o, r in zip(outs, refs)))
    return diffs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input size traced (and verified)')
    parser.add_argument('--dynamic', action='store_true', help='free batch, height and width')
    parser.add_argument('--out', help='ONNX file (default work_dirs/<config>/<config>.onnx)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone: one output per returned stage')
    parser.add_argument('--softmax', action='store_true', help='classifier: output softmax '
                        'probabilities instead of logits')
    parser.add_argument('--fuse', action='store_true', help='fold BatchNorms and merge Q/K '
                        'projections first (VMINet.fuse(); equal up to float rounding)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--verify', action='store_true', help='compare onnxruntime (CPU) with '
                        'PyTorch on random inputs; with --dynamic also at (H+32, W+64), batch 2')
    return parser.parse_args(argv)


def main(argv=None):
    """Returns dict(out=path, diffs={'BxCxHxW': max abs diff}) for tests."""
    args = parse_args(argv)
    h, w = args.shape
    try:
        if min(h, w) < 32:
            raise ValueError(f'--shape {h} {w}: VMINet needs at least 32x32')
        cfg = load_config(args.config)
        if not args.backbone_only and config_scope(cfg) != 'mmpretrain':
            raise ValueError(f'{args.config} is not a classifier config; use --backbone-only')
        model = load_model(cfg, args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    out = args.out or osp.join(default_work_dir(args.config),
                               osp.splitext(osp.basename(args.config))[0]
                               + ('_backbone' if args.backbone_only else '') + '.onnx')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    module = Exportable(model, args.backbone_only, args.softmax).eval()
    names = output_names(model, args.backbone_only, args.softmax)

    gen = torch.Generator().manual_seed(0)
    sizes = [(1, h, w)] + ([(2, h + 32, w + 64)] if args.dynamic else [])
    inputs = [torch.randn(b, 3, hh, ww, generator=gen) for b, hh, ww in sizes]
    with torch.no_grad():  # references from the model as trained, before any fusing
        references = [module(x) for x in inputs] if args.verify else []
        if args.fuse:
            model.backbone.fuse()
        export(module, inputs[0], out, names, args.dynamic, args.opset)
    write_metadata(out, dict(preprocessing(cfg), config=args.config))
    print(f'{out}: {"backbone" if args.backbone_only else "classifier"}, outputs '
          f'{", ".join(names)}, opset {args.opset}, '
          f'{"dynamic batch/height/width" if args.dynamic else f"static 1x3x{h}x{w}"}')
    diffs = {}
    if args.verify:
        for x, diff in zip(inputs, max_abs_diffs(out, inputs, references)):
            key = 'x'.join(map(str, x.shape))
            diffs[key] = diff
            print(f'verify {key}: max abs diff vs PyTorch {diff:.3g}')
    return dict(out=out, diffs=diffs)


if __name__ == '__main__':
    main()
