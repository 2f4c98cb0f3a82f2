"""Run one image through a trained model and draw the result with the library's visualizer:
boxes and masks (mmdet), a colour segmentation (mmseg) or the top class (mmpretrain).

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out result.png [--score-thr 0.3]
"""
import argparse
import os
import os.path as osp
import sys

import mmvminet  # noqa: F401  (fixes + registration)
import mmcv
from mmengine.registry import init_default_scope

from mmvminet.models import CheckpointMismatchError
from mmvminet.runner_utils import config_scope, load_config


def draw_detection(cfg, checkpoint, image, out, score_thr, device):
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    model = init_detector(cfg, checkpoint, device=device)
    result = inference_detector(model, image)
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='mmvminet_demo'))
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False, show=False,
                              pred_score_thr=score_thr, out_file=out)
    kept = (result.pred_instances.scores >= score_thr).sum().item()
    return f'{kept} objects with score >= {score_thr}'


def draw_segmentation(cfg, checkpoint, image, out, score_thr, device):
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import VISUALIZERS
    model = init_model(cfg, checkpoint, device=device)
    result = inference_model(model, image)
    visualizer = VISUALIZERS.build(dict(type='SegLocalVisualizer', name='mmvminet_demo',
                                        alpha=0.6))
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False, show=False,
                              out_file=out)
    classes = model.dataset_meta['classes']
    present = sorted(set(result.pred_sem_seg.data.unique().tolist()))
    return 'classes present: ' + ', '.join(classes[i] for i in present)


def draw_classification(cfg, checkpoint, image, out, score_thr, device):
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(cfg, pretrained=checkpoint, device=device)
    result = inferencer(image)[0]
    from mmpretrain.visualization import UniversalVisualizer
    visualizer = UniversalVisualizer(name='mmvminet_demo')
    from mmpretrain.structures import DataSample
    sample = DataSample().set_pred_label(result['pred_label']).set_pred_score(
        result['pred_scores'])
    visualizer.visualize_cls(image, sample, classes=inferencer.classes, show=False,
                             out_file=out, rescale_factor=max(1.0, 256 / min(image.shape[:2])))
    return f"{result['pred_class']} ({result['pred_score']:.2f})"


DRAW = {'mmdet': draw_detection, 'mmseg': draw_segmentation,
        'mmpretrain': draw_classification}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='where to write the picture (PNG/JPG)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: draw boxes scoring at least this')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    for path, what in ((args.image, 'image'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path!r}')
    try:
        cfg = load_config(args.config)
        scope = config_scope(cfg)
        image = mmcv.imread(args.image, channel_order='rgb')
        if image is None:
            sys.exit(f'error: cannot decode image {args.image!r}')
        init_default_scope(scope)
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        summary = DRAW[scope](cfg, args.checkpoint, image, args.out, args.score_thr,
                              args.device)
    except (FileNotFoundError, ValueError, CheckpointMismatchError) as e:
        sys.exit(f'error: {e}')
    print(f'{args.out}: {summary}')


if __name__ == '__main__':
    main()
