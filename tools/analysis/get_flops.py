"""Params and FLOPs (multiply-accumulates, mmengine's counter) of a classifier, detector or
segmentor config, plus VMI-SA's element-wise work, which the counter does not see.

    python tools/analysis/get_flops.py configs/vminet_xs_in1k.py                 # 224x224
    python tools/analysis/get_flops.py configs/mask_rcnn_vminet_s_1x.py --shape 800 1280
    python tools/analysis/get_flops.py configs/upernet_vminet_s_160k_ade20k.py --shape 512 512

mmengine's counter traces the model and counts convs, linears, norms and resampling. The
element-wise products and sums of VMI-SA (Q*K, the masked weighted context sum, the mix of
context and local terms) are not counted by it; we count them by hand per block:
Q*K: L*D; context sum: L*D MACs; w_ctx*c + w_loc*QK: 2*L*D (L tokens, D channels).
"By part" splits the counter's FLOPs over the model's parts that an image passes (backbone,
neck, heads; ``parts_flops_g`` in --json).
"""
import argparse
import json
import sys
from functools import partial

import mmvminet  # noqa: F401  (fixes + registration)
import torch
from mmengine.analysis import FlopAnalyzer

from mmvminet.models import VMISA
from mmvminet.runner_utils import DictAction, config_scope, load_config


def vmisa_elementwise_macs(model: torch.nn.Module, image_shape) -> int:
    """Hand count of VMI-SA's element-wise work for one image of ``image_shape`` (H, W)."""
    sizes = {}

    def record(module, inputs, output):
        sizes[module] = output.shape

    hooks = [m.q_proj.register_forward_hook(record) for m in model.modules()
             if isinstance(m, VMISA)]
    try:
        run_once(model, image_shape)
    finally:
        for h in hooks:
            h.remove()
    total = 0
    for shape in sizes.values():
        _, d, h, w = shape
        total += 4 * d * h * w
    return total


def build(cfg):
    import importlib
    scope = config_scope(cfg)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    model = registry.build(cfg.model)
    model.eval()
    return scope, model


def tensor_forward(model, image_shape):
    """A callable taking the image batch, in the 'tensor' mode each library's model has."""
    h, w = image_shape
    if hasattr(model, 'rpn_head') or hasattr(model, 'roi_head'):  # mmdet detectors
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w), scale_factor=(1.0, 1.0),
                                             batch_input_shape=(h, w)))
        return partial(model._forward, batch_data_samples=[sample])
    return partial(model.forward, data_samples=None, mode='tensor') \
        if hasattr(model, 'data_preprocessor') else model.forward


def run_once(model, image_shape):
    with torch.no_grad():
        tensor_forward(model, image_shape)(torch.randn(1, 3, *image_shape))


class TensorForward(torch.nn.Module):
    """The model seen as a plain module of one image batch (what the counter traces)."""

    def __init__(self, model, image_shape):
        super().__init__()
        self.model = model
        self.fn = tensor_forward(model, image_shape)

    def forward(self, x):
        return self.fn(x)


def analyse(config: str, shape=None, cfg_options=None) -> dict:
    cfg = load_config(config, cfg_options)
    scope, model = build(cfg)
    if shape is None:
        shape = {'mmpretrain': (224, 224), 'mmdet': (800, 1280), 'mmseg': (512, 2048)}[scope]
    shape = tuple(shape)
    # the counter of mmengine's get_model_complexity_info, kept for its per-module split
    counter = FlopAnalyzer(TensorForward(model, shape), (torch.randn(1, 3, *shape), ))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    by_module = counter.by_module()
    elementwise = vmisa_elementwise_macs(model, shape)
    backbone = getattr(model, 'backbone', model)
    return dict(config=config, scope=scope, shape=list(shape),
                params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                backbone_params_m=sum(p.numel() for p in backbone.parameters()) / 1e6,
                flops_g=by_module[''] / 1e9,
                # the counter's FLOPs of each part the image passes (backbone, neck, heads)
                parts_flops_g={name: by_module[f'model.{name}'] / 1e9
                               for name, _ in model.named_children()
                               if by_module.get(f'model.{name}')},
                vmisa_elementwise_g=elementwise / 1e9,
                total_flops_g=(by_module[''] + elementwise) / 1e9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224x224 classification, 800x1280 '
                        'detection, 512x2048 segmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. model.decode_head.channels=512')
    parser.add_argument('--json', action='store_true', help='print one JSON line')
    args = parser.parse_args(argv)
    try:
        result = analyse(args.config, args.shape, args.cfg_options)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    if args.json:
        print(json.dumps(result))
    else:
        h, w = result['shape']
        print(f"{args.config} @ {h}x{w}\n"
              f"  params:  {result['params_m']:.2f} M (backbone {result['backbone_params_m']:.2f} M)\n"
              f"  FLOPs:   {result['flops_g']:.3f} G (mmengine counter: convs, linears, norms)\n"
              f"         + {result['vmisa_elementwise_g']:.3f} G VMI-SA element-wise (hand count)\n"
              f"         = {result['total_flops_g']:.3f} G\n"
              f"  by part: " + ', '.join(f'{name} {g:.3f} G'
                                        for name, g in result['parts_flops_g'].items()))
    return result


if __name__ == '__main__':
    main()
