"""tools/analysis/vis_cam.py (Grad-CAM) and vis_context.py (alpha grids, context vs local)."""
import copy
import glob
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_export_onnx import CONFIG, ROOT, checkpoint  # noqa: F401  (the classifier fixture)
from tool_scripts import load_tool




vis_cam = load_tool('analysis/vis_cam.py')
vis_context = load_tool('analysis/vis_context.py')
shapes = load_tool('data/make_shapes_dataset.py')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """One validation image per class of a tiny generated shapes dataset (64 px)."""
    out = tmp_path_factory.mktemp('shapes')
    shapes.generate(out, seed=0, img_size=64, num_train_cls=10, num_val_cls=5,
                    num_train_scenes=2, num_val_scenes=2, verbose=False)
    return sorted(glob.glob(str(out / 'cls' / 'val' / '*' / '*.jpg')))


@pytest.fixture(scope='module')
def classifier(checkpoint):  # noqa: F811
    cfg, model, classes = vis_cam.load_classifier(CONFIG, checkpoint)
    return cfg, model, classes


def test_grad_cam_of_the_last_stage_is_cam(classifier):
    """Last stage -> final BN -> global average pool -> Linear: dy_k/dA_c is the constant
    W_kc * s_c / (h w) (s_c the BN scale), so Grad-CAM must equal ReLU(sum_c W_kc s_c A_c) / hw."""
    model = copy.deepcopy(classifier[1])
    bn = model.backbone.norm  # a non-trivial BN: explaining its output instead would differ
    gen = torch.Generator().manual_seed(0)
    bn.weight.data = torch.rand(bn.weight.shape, generator=gen) + .5
    bn.bias.data = torch.randn(bn.bias.shape, generator=gen)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    cam, logits, target = vis_cam.grad_cam(model, x, -1, class_index=3)
    assert target == 3 and logits.shape == (5, )

    with torch.no_grad():
        feats = model.backbone.stem(x)
        for stage in model.backbone.stages:
            feats = stage(feats)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weights = model.head.fc.weight[3] * scale / (feats.shape[2] * feats.shape[3])
    expected = F.relu((weights[:, None, None] * feats[0]).sum(0))
    assert cam.shape == (2, 3)
    torch.testing.assert_close(cam, expected.detach(), rtol=1e-4, atol=1e-6)

    _, _, predicted = vis_cam.grad_cam(model, x, -1)
    assert predicted == int(logits.argmax())


def test_grad_cam_of_an_early_stage(classifier):
    _, model, _ = classifier
    cam, _, _ = vis_cam.grad_cam(model, torch.randn(1, 3, 64, 64), 0)
    assert cam.shape == (16, 16) and (cam >= 0).all() and cam.max() > 0


def test_vis_cam_cli(checkpoint, images, tmp_path):  # noqa: F811
    out_dir = tmp_path / 'cam'
    results = vis_cam.main([CONFIG, checkpoint, *images[:2], '--out-dir', str(out_dir),
                            '--class-index', '0'])
    assert len(results) == 2
    classes = ('circle', 'ring', 'square', 'star', 'triangle')
    for (path, pred, prob), image in zip(results, images):
        stem = os.path.splitext(os.path.basename(image))[0]
        assert os.path.basename(path).startswith(f'{stem}_pred-{pred}')
        assert pred in classes and 0 < prob <= 1
        assert path.endswith('.png' if pred == 'circle' else '_cam-circle.png')
        picture = cv2.imread(path)
        assert picture.shape == (256, 512, 3)  # 64 px input x4, input | heat map
        assert np.abs(picture[:, :256].astype(int) - picture[:, 256:]).mean() > 10


@pytest.mark.parametrize('extra, message', [
    (['--class-index', '5'], '--class-index 5: 5 classes'),
    (['--target-stage', '4'], '--target-stage 4: the backbone has 4 stages'),
])
def test_vis_cam_bad_options(checkpoint, images, tmp_path, extra, message):  # noqa: F811
    with pytest.raises(SystemExit, match=f'^error: {message}'):
        vis_cam.main([CONFIG, checkpoint, images[0], '--out-dir', str(tmp_path)] + extra)


def test_vis_cam_bad_paths(checkpoint, images, tmp_path):  # noqa: F811
    with pytest.raises(SystemExit, match="^error: image not found: 'nope.jpg'"):
        vis_cam.main([CONFIG, checkpoint, images[0], 'nope.jpg', '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='^error: checkpoint not found'):
        vis_cam.main([CONFIG, 'nope.pth', images[0], '--out-dir', str(tmp_path)])
    detector = os.path.join(ROOT, 'configs', 'mask_rcnn_vminet_xs_1x.py')
    with pytest.raises(SystemExit, match='not an mmpretrain classifier config'):
        vis_cam.main([detector, checkpoint, images[0], '--out-dir', str(tmp_path)])


def test_block_terms_rebuild_the_block(classifier):
    """The context and local terms the tool draws add up to what the block computes."""
    _, model, _ = classifier
    x = torch.randn(1, 48, 8, 6)
    block = model.backbone.stages[1].blocks[1]
    with torch.no_grad():
        terms = vis_context.block_terms(block, x)
        torch.testing.assert_close(x + block.out_proj(F.relu6(terms['y'])), block(x))
    torch.testing.assert_close(terms['alpha'], block.token_weights((8, 6)).reshape(8, 6))
    assert terms['share'].shape == terms['local'].shape == (8, 6)
    assert terms['ctx'] > 0 and terms['loc'] > 0


def test_vis_context_cli(checkpoint, images, tmp_path, capsys):  # noqa: F811
    out = tmp_path / 'context.png'
    table = vis_context.main([CONFIG, checkpoint, images[0], '--out', str(out),
                              '--block', 'last'])
    assert [row['size'] for row in table] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [row['blocks'] for row in table] == [2, 2, 18, 2]
    for row in table:
        assert row['ctx'] > 0 and row['loc'] > 0
        assert row['ratio'] == pytest.approx(row['ctx'] / row['loc'])
    assert cv2.imread(str(out)) is not None
    assert 'mean|ctx term|' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="^error: image not found: 'nope.jpg'"):
        vis_context.main([CONFIG, checkpoint, 'nope.jpg', '--out', str(out)])
