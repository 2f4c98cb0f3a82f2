"""Grad-CAM (Selvaraju et al.; the paper's Fig. 3) of a VMINet classifier: where in the image
the evidence for a class lies, as seen from one stage's feature map.

    python tools/analysis/vis_cam.py CONFIG CHECKPOINT IMAGE [IMAGE ...] --out-dir DIR
        [--target-stage -1] [--class-index K]

For the stage's output A (1, C, h, w) and the target logit y (the predicted class, or K):
channel weights w_c = mean over (h, w) of dy/dA_c, cam = ReLU(sum_c w_c A_c), upsampled to the
network's input and scaled to [0, 1]. Images go through the config's test pipeline and
data_preprocessor, as in testing; the picture shows that (resized) input, enlarged to at least
256 px, beside the heat map over its grey version. Writes DIR/<image>_pred-<class>.png
(``_cam-<class>`` added when K is another class than the predicted one), with the prediction
written on the picture.
"""
import argparse
import os
import os.path as osp
import pickle
import sys

import mmvminet  # noqa: F401  (fixes + registration)
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from mmvminet.registry import build_model
from mmvminet.runner_utils import config_scope, load_config


def load_classifier(config: str, checkpoint: str):
    """(cfg, ImageClassifier in eval mode on the CPU, class names) from an mmpretrain config."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint!r}')
    cfg = load_config(config)
    if config_scope(cfg) != 'mmpretrain':
        raise ValueError(f'{config} is not an mmpretrain classifier config')
    init_default_scope('mmpretrain')
    # as mmengine's Runner does: the top-level data_preprocessor (mean/std, to_rgb) is the model's
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = build_model(cfg.model, 'mmpretrain')
    try:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                               logger='silent')
    except (RuntimeError, KeyError, pickle.UnpicklingError) as e:
        raise ValueError(f'cannot load {checkpoint!r} into {config} '
                         f'({type(e).__name__}: {str(e).splitlines()[0]})') from e
    classes = (ckpt.get('meta', {}).get('dataset_meta', {}).get('classes')
               or cfg.test_dataloader.dataset.get('classes'))
    if not classes:  # e.g. the ImageNet configs without dataset_meta in the checkpoint
        classes = [f'class{i}' for i in range(model.head.num_classes)]
    return cfg, model.eval(), list(classes)


def load_image(cfg, model, path: str):
    """The config's test pipeline and the model's data_preprocessor applied to one image file.

    Returns (inputs (1, 3, H, W) float as the network sees it, rgb (H, W, 3) uint8 of the same
    pixels before normalisation).
    """
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path!r}')
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline])
    try:
        packed = pipeline(dict(img_path=path))
    except Exception as e:  # mmcv reports undecodable files in many ways
        raise ValueError(f'cannot read image {path!r}: {e}') from e
    data = model.data_preprocessor(dict(inputs=[packed['inputs']], data_samples=None), False)
    bgr = packed['inputs'].permute(1, 2, 0).numpy()  # mmcv loads BGR
    return data['inputs'], np.ascontiguousarray(bgr[..., ::-1])


def grad_cam(model, inputs: torch.Tensor, stage: int, class_index=None):
    """Grad-CAM on ``model.backbone.stages[stage]``'s output for one image.

    inputs (1, 3, H, W) -> (cam (h, w) >= 0 at the stage's resolution, logits (K, ), class).
    """
    acts = []
    handle = model.backbone.stages[stage].register_forward_hook(
        lambda module, args, out: acts.append(out))
    try:
        with torch.enable_grad():
            logits = model(inputs, mode='tensor')[0]
            target = int(logits.argmax()) if class_index is None else class_index
            grad, = torch.autograd.grad(logits[target], acts[0])
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
    cam = F.relu((weights * acts[0]).sum(1))[0]
    return cam.detach(), logits.detach(), target


def overlay(rgb: np.ndarray, cam: torch.Tensor, text: str, min_side: int = 256) -> np.ndarray:
    """The input beside a jet heat map of cam (h, w) (scaled to [0, 1], upsampled) laid over
    its grey version: the shapes images' colourful backgrounds would drown the map's colours.

    rgb (H, W, 3) uint8 -> (H', 2 W', 3) uint8 RGB, enlarged so that H' >= ``min_side``.
    """
    from matplotlib import colormaps
    scale = max(1, -(-min_side // min(rgb.shape[:2])))
    size = (rgb.shape[0] * scale, rgb.shape[1] * scale)
    heat = F.interpolate(cam[None, None], size=size, mode='bilinear', align_corners=False)[0, 0]
    heat = (heat / heat.max() if heat.max() > 0 else heat).numpy()
    colour = colormaps['jet'](heat)[..., :3] * 255
    image = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    out = np.concatenate([image, (0.4 * grey + 0.6 * colour).astype(np.uint8)], axis=1)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined: any background
        cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, thickness,
                    cv2.LINE_AA)
    return out


def main(argv=None):
    """Returns [(png path, predicted class, its probability)], one per image, for tests."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+', metavar='IMAGE')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--target-stage', type=int, default=-1,
                        help='stage whose output is explained, 0..3 or -1 (last)')
    parser.add_argument('--class-index', type=int,
                        help='class to explain (default: the predicted one)')
    args = parser.parse_args(argv)
    try:
        cfg, model, classes = load_classifier(args.config, args.checkpoint)
        num_stages = len(model.backbone.stages)
        if not -num_stages <= args.target_stage < num_stages:
            raise ValueError(f'--target-stage {args.target_stage}: the backbone has '
                             f'{num_stages} stages')
        if args.class_index is not None and not 0 <= args.class_index < len(classes):
            raise ValueError(f'--class-index {args.class_index}: {len(classes)} classes')
        images = [load_image(cfg, model, path) for path in args.images]
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    os.makedirs(args.out_dir, exist_ok=True)
    results = []
    for path, (inputs, rgb) in zip(args.images, images):
        cam, logits, target = grad_cam(model, inputs, args.target_stage, args.class_index)
        probs = logits.softmax(-1)
        pred = int(probs.argmax())
        name = f'{osp.splitext(osp.basename(path))[0]}_pred-{classes[pred]}'
        text = f'{classes[pred]} {probs[pred]:.2f}'
        if target != pred:
            name += f'_cam-{classes[target]}'
            text += f' / cam: {classes[target]}'
        out = osp.join(args.out_dir, name + '.png')
        cv2.imwrite(out, overlay(rgb, cam, text)[..., ::-1])
        print(f'{out}: {text}')
        results.append((out, classes[pred], float(probs[pred])))
    return results


if __name__ == '__main__':
    main()
