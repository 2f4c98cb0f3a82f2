"""The VMINet backbone: the paper's network, any input size, both forms, all masks."""
import pytest
import torch
import torch.nn.functional as F

from mmvminet.models import vminet as vm
from mmvminet.models.vminet import VMINet, VMISA, block_mask_kinds, build_mask, resize_alpha

# spec table (params with a 1000-class head) and paper Table 1
SPEC_PARAMS = {'ti': 2.03e6, 'xs': 7.43e6, 's': 13.34e6, 'b': 28.37e6}
PAPER_PARAMS = {'ti': 2.0e6, 'xs': 7.4e6, 's': 13.3e6, 'b': 28.4e6}


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch', ['ti', 'xs', 's', 'b'])
def test_params_match_table1(arch):
    model = VMINet(arch)
    total = count(model) + model.channels[-1] * 1000 + 1000  # + Linear head
    assert abs(total - SPEC_PARAMS[arch]) / SPEC_PARAMS[arch] < 0.01, total
    # the paper prints one decimal (2.03 M -> "2.0M")
    assert round(total / 1e6, 1) == PAPER_PARAMS[arch] / 1e6, total


@pytest.mark.parametrize('size', [(224, 224), (64, 64), (100, 150), (97, 61), (160, 96)])
def test_shapes_and_strides(size):
    torch.manual_seed(0)
    model = VMINet('ti', out_indices=(0, 1, 2, 3)).eval()
    assert model.channels == (24, 48, 96, 192) and model.strides == (4, 8, 16, 32)
    assert model.out_channels == model.channels and model.out_strides == model.strides
    h, w = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    for out, c, s in zip(outs, model.channels, model.strides):
        # every conv is 3x3, stride 2, padding 1: ceil division
        assert out.shape == (2, c, -(-h // s), -(-w // s))
        assert torch.isfinite(out).all()


def test_large_detection_size_runs():
    model = VMINet('ti', out_indices=(3, )).eval()
    with torch.no_grad():
        (out, ) = model(torch.randn(1, 3, 800, 1333))
    assert out.shape == (1, 192, 25, 42)


def test_alpha_at_its_own_grid_is_not_resized():
    alpha = torch.randn(7 * 7)
    assert resize_alpha(alpha, (7, 7), (7, 7)) is alpha
    # the bilinear resize it skips is the identity there, so 224 inputs keep their numbers
    resized = F.interpolate(alpha.reshape(1, 1, 7, 7), size=(7, 7), mode='bilinear',
                            align_corners=False)
    assert torch.equal(resized.reshape(-1), alpha)


def test_alpha_resize_keeps_the_sum():
    const = torch.full((7 * 7, ), 0.3)
    for size in [(7, 7), (14, 14), (25, 42), (5, 3), (13, 9)]:
        out = resize_alpha(const, (7, 7), size)
        assert out.shape == (size[0] * size[1], )
        assert torch.allclose(out.sum(), const.sum(), rtol=1e-5)
    smooth = torch.linspace(0.1, 1.0, 56 * 56)  # a smooth positive grid, like trained weights
    for size in [(128, 128), (200, 334), (40, 40)]:
        assert abs(resize_alpha(smooth, (56, 56), size).sum() / smooth.sum() - 1) < 0.02


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match='at least 32x32.*got 16x64'):
        VMINet('ti')(torch.randn(1, 3, 16, 64))


def test_unknown_arch_and_kinds_list_valid_ones():
    with pytest.raises(ValueError, match="unknown VMINet arch 'xl'.*ti, xs, s, b"):
        VMINet('xl')
    with pytest.raises(ValueError, match='missing.*ratio'):
        VMINet(dict(base_dim=8))
    with pytest.raises(ValueError, match="unknown mask_kind 'causal'.*lower_triangular"):
        VMINet('ti', mask_kind='causal')
    with pytest.raises(ValueError, match="unknown form 'rnn'.*matrix, recurrent"):
        VMINet('ti', form='rnn')


def test_lower_triangular_mask_is_eq8():
    m = build_mask('lower_triangular', 6, 4)
    assert torch.equal(m, torch.tril(torch.ones(6, 4)))
    wide = build_mask('lower_triangular', 3, 5)  # D > L: channels n >= L receive nothing
    assert wide[:, 3:].sum() == 0 and torch.equal(wide[:, :3], torch.tril(torch.ones(3, 3)))


def test_other_masks():
    band = build_mask('banded', 10, 8)  # B = 8, bandwidth B/2 = 4
    assert band[0, :5].all() and band[0, 5:].sum() == 0 and band[9, 5:].all()
    assert torch.equal(band, band.new_tensor([[abs(t - n) <= 4 for n in range(8)]
                                               for t in range(10)]))
    blocks = build_mask('block_diagonal', 9, 6)  # B = 6: three 2x2 blocks
    assert blocks.sum() == 12 and blocks[:6, :6].equal(torch.block_diag(*[torch.ones(2, 2)] * 3))
    assert build_mask('none', 4, 3).equal(torch.ones(4, 3))
    kinds = block_mask_kinds('hybrid', (2, 2, 4, 2))
    assert kinds[0] == kinds[1] == ['banded', 'banded']
    assert kinds[2] == ['lower_triangular', 'banded'] * 2 and kinds[3] == kinds[2][:2]


@pytest.mark.parametrize('kind', ['lower_triangular', 'banded', 'block_diagonal', 'none'])
def test_recurrent_form_matches_token_loop(kind):
    """The parallel (cumsum) recurrent form against Eq. (9) evaluated one token at a time."""
    torch.manual_seed(0)
    block = VMISA(8, 2, alpha_grid=(4, 5), mask_kind=kind, form='recurrent').eval()
    with torch.no_grad():
        block.alpha.normal_()
        block.w_ctx.fill_(0.7)
        block.w_loc.fill_(1.3)
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        out = block(x)
        u = block.dwconv(x)
        qk = (F.relu6(block.q_proj(u)) * block.k_proj(u)).flatten(2)  # (B, D, L)
        mask = build_mask(kind, 20, 16)
        h = torch.zeros(2, 16)
        ys = []
        for i in range(20):
            h = h + block.alpha[i] * qk[:, :, i]                         # h_i
            ys.append(block.w_ctx * mask[i] * h + block.w_loc * qk[:, :, i])  # y_i
        y = torch.stack(ys, -1).reshape(2, 16, 4, 5)
        expected = x + block.out_proj(F.relu6(y))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_matrix_form_context_vector_is_eq10():
    torch.manual_seed(1)
    block = VMISA(4, 2, alpha_grid=(3, 3))
    qk = torch.randn(2, 8, 3, 3)
    expected = torch.stack([
        sum(block.alpha[t] * (torch.arange(8) <= t).float() * qk[b, :, t // 3, t % 3]
            for t in range(9)) for b in range(2)])
    torch.testing.assert_close(block.context_vector(qk).flatten(1), expected)


def test_recurrent_model_shares_weights_with_matrix_model():
    matrix = VMINet('ti').eval()
    recurrent = VMINet('ti', form='recurrent').eval()
    recurrent.load_state_dict(matrix.state_dict())
    with torch.no_grad():
        out = recurrent(torch.randn(1, 3, 96, 96))[0]
    assert out.shape == (1, 192, 3, 3)


def test_frozen_stages_and_norm_eval():
    model = VMINet('ti', frozen_stages=1, norm_eval=True, drop_path_rate=0.1)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks
             if not isinstance(b.drop_path, torch.nn.Identity)]
    assert len(rates) == 23 and abs(rates[-1] - 0.1) < 1e-6


def test_hybrid_model_builds_with_per_block_masks():
    model = VMINet('ti', mask_kind='hybrid')
    kinds = [b.mask_kind for s in model.stages for b in s.blocks]
    assert kinds[:4] == ['banded'] * 4 and kinds[4:6] == ['lower_triangular', 'banded']
    assert vm.MASK_KINDS[-1] == 'hybrid'


def test_fuse_folds_batchnorm_without_changing_outputs():
    from official_reference import randomize
    model = randomize(VMINet('ti', out_indices=(1, 3)), seed=2).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
        again = model.fuse(triton=True)(x)  # a second fuse only switches the kernels on
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stages.modules())
    assert all(b.use_triton for s in model.stages for b in s.blocks) and model.stem_triton
    for a, b, c in zip(before, after, again):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('size', [(3, 4), (5, 7)])  # D = 16 > L = 12; D < L = 35
def test_lower_triangular_context_takes_the_masks_values(dtype, size):
    """The lower-triangular weights built with triu give the values and alpha gradients of the
    mask product M^T * alpha (Eq. 8, 10) bit for bit, where D > L and where D < L."""
    torch.manual_seed(2)
    block = VMISA(8, 2, alpha_grid=(4, 5)).to(dtype)
    qk = torch.randn(2, 16, *size, dtype=dtype)
    h, w = size

    def by_mask():
        mask = build_mask('lower_triangular', h * w, 16, dtype=dtype)
        weight = mask.t() * block.token_weights((h, w)).to(dtype)
        return (qk.flatten(2) * weight).sum(-1).reshape(2, 16, 1, 1)

    results = []
    for context in (block.context_vector(qk), by_mask()):
        block.alpha.grad = None
        (context * torch.linspace(-1, 1, 32, dtype=dtype).reshape(2, 16, 1, 1)).sum().backward()
        results.append((context.detach(), block.alpha.grad.clone()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
