"""mmvminet.seg_loss: the decode heads' resize and accuracy give mmseg's values and gradients."""
import pytest
import torch
import torch.nn.functional as F

import mmvminet  # noqa: F401  (stack fixes before mmseg.models is imported)
from mmvminet import seg_loss
from mmvminet.hooks import FastDecodeHeadLossHook

mmseg = pytest.importorskip('mmseg')
from mmengine.structures import PixelData  # noqa: E402
from mmseg.models.decode_heads import FCNHead, decode_head  # noqa: E402
from mmseg.models.losses.accuracy import accuracy as mmseg_accuracy  # noqa: E402
from mmseg.models.utils.wrappers import resize as mmseg_resize  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402


@pytest.fixture(autouse=True)
def mmseg_ops_after():
    yield
    seg_loss.use_fast_decode_head_ops(False)


def resize_grads(resize, x, size, align_corners, grad):
    x = x.detach().requires_grad_()
    y = resize(x, size=size, mode='bilinear', align_corners=align_corners, warning=False)
    y.backward(grad)
    return y, x.grad


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size_in,size_out', [((8, 8), (128, 128)), ((5, 7), (33, 41)),
                                              ((16, 12), (64, 50))])
def test_upsampling_backward_equals_pytorchs(size_in, size_out, align_corners):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size_in, dtype=torch.float64)
    grad = torch.randn(2, 3, *size_out, dtype=torch.float64)
    y, dx = resize_grads(seg_loss.resize, x, size_out, align_corners, grad)
    y_ref, dx_ref = resize_grads(mmseg_resize, x, size_out, align_corners, grad)
    assert y.grad_fn.name().startswith('UpsampleBilinear')  # ours: not PyTorch's backward
    assert torch.equal(y, y_ref)  # the forward is mmseg's
    torch.testing.assert_close(dx, dx_ref, rtol=1e-12, atol=1e-12)


def test_low_precision_gradients_keep_their_dtype():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    grad = torch.randn(1, 4, 64, 64)
    _, dx = resize_grads(seg_loss.resize, x.bfloat16(), (64, 64), False, grad.bfloat16())
    _, dx_ref = resize_grads(mmseg_resize, x.double(), (64, 64), False, grad.bfloat16().double())
    assert dx.dtype == torch.bfloat16
    torch.testing.assert_close(dx.double(), dx_ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize('case', ['downsample', 'same size', 'large input', 'nearest',
                                  'no grad', 'scale factor'])
def test_other_resizes_are_mmsegs(case):
    x = torch.randn(1, 2, 16, 16, requires_grad=case != 'no grad')
    kwargs = dict(size=(32, 32), mode='bilinear', align_corners=False, warning=False)
    if case == 'downsample':
        kwargs['size'] = (8, 8)
    elif case == 'same size':
        kwargs['size'] = (16, 16)
    elif case == 'large input':
        x = torch.randn(1, 1, seg_loss.MAX_MATMUL_SIDE + 1, 4, requires_grad=True)
        kwargs['size'] = (seg_loss.MAX_MATMUL_SIDE * 2, 8)
    elif case == 'nearest':
        kwargs['mode'] = 'nearest'
        kwargs['align_corners'] = None
    elif case == 'scale factor':
        kwargs.update(size=None, scale_factor=2)
    y = seg_loss.resize(x, **kwargs)
    assert torch.equal(y, mmseg_resize(x, **kwargs))
    assert y.grad_fn is None if case == 'no grad' else \
        not y.grad_fn.name().startswith('UpsampleBilinearBackward')


@pytest.mark.parametrize('ignore_index', [None, 255])
def test_top1_accuracy_equals_mmsegs(ignore_index):
    torch.manual_seed(0)
    pred = torch.randn(2, 5, 6, 7)
    target = torch.randint(0, 5, (2, 6, 7))
    target[0, :2] = 255 if ignore_index else 0
    target[1, 3] = pred[1, :, 3].argmax(0)  # some right, most wrong
    ours = seg_loss.accuracy(pred, target, ignore_index=ignore_index)
    ref = mmseg_accuracy(pred, target, ignore_index=ignore_index)
    assert ours.shape == ref.shape == (1,)
    torch.testing.assert_close(ours, ref)
    assert 0 < ours.item() < 100


def test_accuracy_all_ignored_and_other_cases():
    pred = torch.randn(1, 3, 4, 4)
    target = torch.full((1, 4, 4), 255)
    torch.testing.assert_close(seg_loss.accuracy(pred, target, ignore_index=255),
                               mmseg_accuracy(pred, target, ignore_index=255))
    target = torch.randint(0, 3, (1, 4, 4))
    # top-k, a threshold and an empty batch are mmseg's own (its threshold takes 2-D scores)
    for scores, labels, kwargs in ((pred, target, dict(topk=(1, 2))),
                                   (pred, target, dict(topk=2)),
                                   (pred[0, :, 0].t(), target[0, 0], dict(thresh=0.5))):
        ours, ref = (f(scores, labels, **kwargs) for f in (seg_loss.accuracy, mmseg_accuracy))
        for a, b in zip(ours if isinstance(ours, list) else [ours],
                        ref if isinstance(ref, list) else [ref]):
            torch.testing.assert_close(a, b)
    assert seg_loss.accuracy(pred[:0], target[:0]).item() == 0


def head_loss_and_grads(head, feature, samples):
    feature = feature.detach().requires_grad_()
    head.zero_grad()
    losses = head.loss_by_feat(head([feature]), samples)
    losses['loss_ce'].backward()
    return losses, feature.grad, head.conv_seg.weight.grad.clone()


def test_decode_head_loss_is_unchanged():
    """An mmseg head's loss, score and gradients with our ops equal those with mmseg's."""
    torch.manual_seed(0)
    # mmseg's loss by name: an earlier test may have left another library's default scope
    head = FCNHead(in_channels=8, channels=8, num_convs=1, num_classes=5, in_index=0,
                   dropout_ratio=0.0, loss_decode=dict(type='mmseg.CrossEntropyLoss'))
    feature = torch.randn(2, 8, 8, 8)
    samples = []
    for _ in range(2):
        label = torch.randint(0, 5, (1, 64, 64))
        label[:, :4] = 255
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label)))
    ref = head_loss_and_grads(head, feature, samples)
    seg_loss.use_fast_decode_head_ops(True)
    assert decode_head.resize is seg_loss.resize and decode_head.accuracy is seg_loss.accuracy
    ours = head_loss_and_grads(head, feature, samples)
    for key in ('loss_ce', 'acc_seg'):
        torch.testing.assert_close(ours[0][key], ref[0][key])
    for a, b in zip(ours[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_hook_sets_the_ops_for_the_run():
    hook = FastDecodeHeadLossHook()
    hook.before_run(runner=None)
    assert decode_head.resize is seg_loss.resize and decode_head.accuracy is seg_loss.accuracy
    hook.after_run(runner=None)
    assert decode_head.resize is mmseg_resize and decode_head.accuracy is mmseg_accuracy


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cuda_upsampling_backward(dtype):
    """The UperNet auxiliary head's case on the GPU: 2 x 150 x 32x32 -> 512x512."""
    torch.manual_seed(0)
    x = torch.randn(2, 150, 32, 32, device='cuda', dtype=dtype)
    grad = torch.randn(2, 150, 512, 512, device='cuda', dtype=dtype)
    _, dx = resize_grads(seg_loss.resize, x, (512, 512), False, grad)
    _, dx_ref = resize_grads(mmseg_resize, x.double(), (512, 512), False, grad.double())
    assert dx.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(dx.double(), dx_ref, rtol=tol, atol=tol * dx_ref.abs().max())
