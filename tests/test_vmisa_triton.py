"""The fused Triton VMI-SA kernels against the PyTorch path.

CPU: Triton's interpreter (TRITON_INTERPRET=1, read when the kernels are defined, hence a fresh
process) runs the kernels on CPU tensors. GPU (marked): the compiled kernels, bf16 and fp32, and
torch.compile through the custom op.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from mmvminet.models import VMINet, VMISA, vmisa_triton

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TRITON = vmisa_triton.triton is not None

# Runs in a fresh interpreter-mode process; prints one JSON line of results.
INTERPRETED = r'''
import json
import torch
from mmvminet.models import VMISA, vmisa_triton

calls, dw_calls, gemm_calls, conv_calls = [], [], [], []
fused, depthwise = vmisa_triton._vmisa_fused, vmisa_triton._depthwise_conv
gemm, conv = vmisa_triton._vmisa_gemm_impl, vmisa_triton._conv
vmisa_triton._conv = lambda *args: conv_calls.append(1) or conv(*args)
vmisa_triton._vmisa_fused = lambda *args: calls.append(1) or fused(*args)
vmisa_triton._vmisa_gemm_impl = lambda *args, **kw: gemm_calls.append(1) or gemm(*args, **kw)
vmisa_triton._depthwise_conv = lambda *args: dw_calls.append(1) or depthwise(*args)


def block(channels, kind, form='matrix'):
    torch.manual_seed(channels)
    blk = VMISA(channels, 2, (4, 4), kind, form).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, 0.3)
        blk.dwconv.norm.running_mean.normal_()
        blk.dwconv.norm.running_var.uniform_(0.5, 2)
    return blk


results = {}
# (C, H, W): the fused pair on 135 tokens in three spans of a tile, D = 48 < L, C = 24 as 16
# + 16 columns (8 masked); 58 tokens with D = 80 > L in three D steps, C = 40 as 32 + 16;
# 300 tokens in three spans of two tiles, C = 64 in one part. C > FUSED_MAX_CHANNELS: the GEMM
# pair, 150 tokens in three tiles at C = 80, D = 160 > L; its token tiles spanning 3 images of
# 12 tokens (C = 112) and 2 of 35 (C = 128); C = 104 (not a multiple of 16): the PyTorch path
# after the depthwise kernel
for kind in vmisa_triton.MASK_IDS:
    for channels, h, w in [(24, 9, 15), (40, 2, 29), (64, 10, 30), (80, 5, 30), (112, 4, 3),
                           (128, 5, 7), (104, 3, 5)]:
        blk = block(channels, kind)
        x = torch.randn(2, channels, h, w).to(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = blk(x)
            blk.fuse(triton=True)
            before, dw_before, gemm_before = len(calls), len(dw_calls), len(gemm_calls)
            out = blk(x)
        results[f'{kind}/{channels}/{h}x{w}'] = dict(
            diff=(out - ref).abs().max().item(), scale=ref.abs().max().item(),
            fused=len(calls) - before, dwconv=len(dw_calls) - dw_before,
            gemm=len(gemm_calls) - gemm_before, shape=list(out.shape))
# the GEMM pair at other tiles (pass 1, pass 2) on 10 tokens per image: pass 2 with C = 128
# columns in two programs of 64, and in one program of two 64-wide chunks; token tiles
# spanning 2 to 5 images
blk = block(128, 'lower_triangular')
x = torch.randn(3, 128, 2, 5).to(memory_format=torch.channels_last)
with torch.no_grad():
    ref = blk(x)
    blk.fuse(triton=True)
    u = blk.dwconv(x)
    results['gemm_tiles'] = {
        str(blocks): (blk.fused_forward(x, u, blocks) - ref).abs().max().item()
        for blocks in [((16, 32, 32, 4, 2), (16, 64, 32, 4, 2)),
                       ((32, 64, 64, 4, 2), (32, 128, 16, 4, 2))]}
    results['gemm_scale'] = ref.abs().max().item()
# the depthwise kernel alone, at the default tiles (under the interpreter: one program per map)
# and others (ROWS, STRIP, BLOCK_C, warps): row chunks shorter and longer than the map (halos at
# both edges, maps shorter than the kernel), column strips narrower and wider than W, channel
# tiles that do and do not divide C, lanes of 1, 2 and 4 images (masked past the batch), a 3x3
# kernel, three dtypes (bf16 and fp16 against conv2d of the same input in fp32)
dw = {}
for b, c, h, w, k, dtype, config in [
        (2, 24, 9, 11, 7, 'float32', None), (1, 40, 5, 70, 7, 'float32', None),
        (1, 80, 7, 7, 7, 'float32', (2, 4, 32, 1)), (1, 16, 3, 2, 7, 'float32', (8, 8, 16, 1)),
        (2, 20, 6, 5, 3, 'float32', (4, 2, 16, 1)), (2, 64, 14, 14, 7, 'float32', (16, 16, 64, 2)),
        (2, 64, 14, 14, 7, 'bfloat16', None), (1, 40, 11, 9, 7, 'bfloat16', (4, 8, 32, 1)),
        (1, 24, 6, 7, 3, 'float16', (1, 16, 16, 1)), (1, 15, 4, 6, 7, 'bfloat16', (2, 4, 16, 1)),
        (3, 24, 6, 9, 7, 'float32', (4, 7, 8, 1))]:
    torch.manual_seed(c)
    x = torch.randn(b, c, h, w).to(getattr(torch, dtype)).to(memory_format=torch.channels_last)
    weight, bias = torch.randn(c, 1, k, k), torch.randn(c)
    ref = torch.nn.functional.conv2d(x.float(), weight, bias, padding=k // 2, groups=c)
    taps = vmisa_triton.tap_weights(weight)
    if config is None:
        out = vmisa_triton.depthwise_conv(x, taps, bias)
    else:
        out = vmisa_triton._depthwise_conv_impl(x, taps, bias, config)
    dw[f'{b}x{c}x{h}x{w}/k{k}/{dtype}/{config}'] = dict(
        diff=(out.float() - ref).abs().max().item(), scale=ref.abs().max().item(),
        shape=list(out.shape), dtype=str(out.dtype).split('.')[-1],
        channels_last=out.is_contiguous(memory_format=torch.channels_last))
results['dwconv'] = dw
# the stem kernel (conv + ReLU6) against conv2d: NCHW and channels-last inputs, odd sizes,
# COUT not a power of two, a 5x5 stride-1 conv, fp16 out of an fp32 input (Triton's
# interpreter gets bf16 dots wrong: bf16 is checked on the GPU)
stem = {}
for cout, h, w, k, stride, channels_last, dtype in [
        (32, 17, 20, 3, 2, True, 'float32'), (24, 9, 7, 3, 2, False, 'float32'),
        (16, 8, 8, 5, 1, True, 'float32'), (32, 11, 6, 3, 2, False, 'float16')]:
    torch.manual_seed(cout + h)
    x = torch.randn(2, 3, h, w)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    weight, bias = torch.randn(cout, 3, k, k), torch.randn(cout)
    ref = torch.nn.functional.conv2d(x.to(getattr(torch, dtype)).float(), weight, bias, stride,
                                     k // 2).clamp(0, 6)
    out = vmisa_triton.stem_conv(x, vmisa_triton.stem_table(weight), bias, k, stride,
                                 getattr(torch, dtype))
    stem[f'{cout}/{h}x{w}/k{k}s{stride}/{channels_last}/{dtype}'] = dict(
        diff=(out.float() - ref).abs().max().item(), shape=list(out.shape), ref=list(ref.shape),
        dtype=str(out.dtype).split('.')[-1],
        channels_last=out.is_contiguous(memory_format=torch.channels_last))
results['stem'] = stem
# the conv kernel (the downsamplers' conv + bias) against conv2d, fp32: COUT not a power of two
# (masked columns), CIN not a multiple of BLOCK_K (a masked last chunk), an NCHW input
# (copied), odd sizes, a 5x5 stride-1 conv; the default tiles, and small tiles over several
# chunks, pixel tiles and column tiles
convs = {}
for cin, cout, h, w, k, stride, channels_last, config in [
        (32, 48, 9, 11, 3, 2, True, None), (48, 24, 7, 6, 3, 2, False, (16, 16, 32, 1, 2)),
        (16, 20, 6, 5, 5, 1, True, (32, 16, 16, 1, 1)), (24, 40, 8, 8, 3, 2, True,
                                                         (16, 32, 16, 1, 2))]:
    torch.manual_seed(cin + h)
    x = torch.randn(2, cin, h, w)
    x = x.to(memory_format=torch.channels_last) if channels_last else x
    weight, bias = torch.randn(cout, cin, k, k), torch.randn(cout)
    ref = torch.nn.functional.conv2d(x, weight, bias, stride, k // 2)
    table = vmisa_triton.conv_table(weight)
    out = (vmisa_triton.conv(x, table, bias, k, stride) if config is None else
           vmisa_triton._conv_impl(x, table, bias, k, stride, config))
    convs[f'{cin}->{cout}/{h}x{w}/k{k}s{stride}/{channels_last}/{config}'] = dict(
        diff=(out - ref).abs().max().item(), scale=ref.abs().max().item(),
        shape=list(out.shape), ref=list(ref.shape),
        channels_last=out.is_contiguous(memory_format=torch.channels_last))
results['conv'] = convs
# a whole fused VMINet-Ti: the stem kernel, the depthwise kernel and both pairs
from mmvminet.models import VMINet
torch.manual_seed(0)
model = VMINet('ti', out_indices=(0, 1, 2, 3)).eval()
x = torch.randn(1, 3, 64, 48)
with torch.no_grad():
    ref = model(x)
    before = len(conv_calls)
    out = model.fuse(triton=True)(x)
results['model'] = [(a - b).abs().max().item() / max(1.0, a.abs().max().item())
                    for a, b in zip(ref, out)]
results['model_convs'] = len(conv_calls) - before
# the recurrent form and grad mode (no autograd for the kernels): the PyTorch path
before = len(calls)
blk = block(24, 'banded', 'recurrent')
blk.fuse(triton=True)
x = torch.randn(1, 24, 5, 5)
with torch.no_grad():
    blk(x)
blk = block(24, 'banded')
blk.fuse(triton=True)
blk(x)
results['fallback_calls'] = len(calls) - before
print(json.dumps(results))
'''


@pytest.fixture(scope='module')
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-c', INTERPRETED], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
@pytest.mark.parametrize('kind', list(vmisa_triton.MASK_IDS))
def test_interpreted_kernels_match_pytorch(interpreted, kind):
    cases = {k: v for k, v in interpreted.items() if k.startswith(kind + '/')}
    assert len(cases) == 7
    for name, case in cases.items():
        channels, hw = name.split('/')[1:]
        wide = int(channels) > vmisa_triton.FUSED_MAX_CHANNELS
        multiple = int(channels) % 16 == 0
        # the fused pair, the GEMM pair, or the PyTorch path
        assert case['fused'] == int(not wide or multiple), name
        assert case['gemm'] == int(wide and multiple), name
        assert case['dwconv'] == 1, name
        assert case['diff'] < 1e-5 * max(1.0, case['scale']), (name, case)
        assert case['shape'] == [2, int(channels)] + [int(v) for v in hw.split('x')]


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_gemm_pair_at_other_tiles(interpreted):
    assert len(interpreted['gemm_tiles']) == 2
    for blocks, diff in interpreted['gemm_tiles'].items():
        assert diff < 1e-5 * max(1.0, interpreted['gemm_scale']), blocks


def test_gemm_blocks_pass2_columns():
    # all of C in one program where BLOCK_M * C <= 64 * 384, else the widest part that fits
    assert vmisa_triton.gemm_blocks(192, 384, 196)[1][:2] == (64, 192)
    assert vmisa_triton.gemm_blocks(384, 768, 49)[1][:2] == (64, 384)
    assert vmisa_triton.gemm_blocks(768, 1536, 49)[1][:2] == (64, 384)
    assert vmisa_triton.gemm_blocks(112, 224, 12)[1][:2] == (16, 112)
    assert vmisa_triton.gemm_blocks(104, 208, 12) is None


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_stem_conv_matches_conv2d(interpreted):
    cases = interpreted['stem']
    assert len(cases) == 4
    for name, case in cases.items():
        dtype = name.split('/')[-1]
        # fp16: one rounding of the fp32 sum (half an ulp; the interpreter truncates: one ulp)
        assert case['diff'] < (1e-5 if dtype == 'float32' else 6 * 2**-10), (name, case)
        assert case['shape'] == case['ref'] and case['dtype'] == dtype, (name, case)
        assert case['channels_last'], name


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_conv_matches_conv2d(interpreted):
    cases = interpreted['conv']
    assert len(cases) == 4
    for name, case in cases.items():
        assert case['diff'] < 1e-5 * max(1.0, case['scale']), (name, case)
        assert case['shape'] == case['ref'] and case['channels_last'], (name, case)


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_fused_model_matches(interpreted):
    assert len(interpreted['model']) == 4
    assert max(interpreted['model']) < 1e-5, interpreted['model']
    assert interpreted['model_convs'] == 4  # the downsamplers


def test_conv_rejects_other_tables():
    x = torch.randn(1, 16, 8, 8)
    weight = torch.randn(32, 16, 3, 3)
    with pytest.raises(ValueError, match=r'conv_table of a \(32, 16, K, K\) weight with odd '
                                         r'K = 3: a \(144, 32\) table, got \(32, 16, 3, 3\)'):
        vmisa_triton.conv(x, weight, torch.randn(32), 3, 2)
    table = vmisa_triton.conv_table(weight)
    assert table.shape == (144, 32)
    with pytest.raises(ValueError, match='odd K = 2'):
        vmisa_triton.conv(x, table, torch.randn(32), 2, 2)
    with pytest.raises(ValueError, match=r'\(48, 16, K, K\)'):  # the table of another COUT
        vmisa_triton.conv(x, table, torch.randn(48), 3, 2)
    with pytest.raises(ValueError, match=r'\(32, 8, K, K\)'):  # an input of other channels
        vmisa_triton.conv(x[:, :8], table, torch.randn(32), 3, 2)


def test_conv_config_tiles_every_variant():
    # BLOCK_K divides CIN or covers it; BLOCK_N covers COUT up to 256
    assert vmisa_triton.conv_config(32, 48) == (256, 64, 32, 4, 4)
    assert vmisa_triton.conv_config(48, 96) == (128, 128, 64, 8, 3)
    assert vmisa_triton.conv_config(96, 192) == (64, 256, 32, 4, 4)
    assert vmisa_triton.conv_config(192, 384) == (64, 128, 64, 4, 3)
    for arch in VMINet.arch_settings:
        widths = [32] + [VMINet.arch_settings[arch]['base_dim'] * 2**i for i in range(4)]
        for cin, cout in zip(widths, widths[1:]):
            block_m, block_n, block_k, _, _ = vmisa_triton.conv_config(cin, cout)
            assert cin % block_k == 0 or block_k >= cin, (arch, cin)
            assert block_n >= min(cout, 128) and block_m * block_n <= 16384, (arch, cout)


def test_stem_conv_rejects_other_tables():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r'stem_table of a \(32, 3, K, K\) weight .* got a '
                                         r'\(32, 3, 3, 3\) table'):
        vmisa_triton.stem_conv(x, torch.randn(32, 3, 3, 3), torch.randn(32), 3, 2, x.dtype)
    table = vmisa_triton.stem_table(torch.randn(32, 3, 3, 3))
    assert table.shape == (32, 32)
    with pytest.raises(ValueError, match='odd K = 4'):
        vmisa_triton.stem_conv(x, table, torch.randn(32), 4, 2, x.dtype)
    with pytest.raises(ValueError, match=r'\(48, 3, K, K\)'):  # the table of another COUT
        vmisa_triton.stem_conv(x, table, torch.randn(48), 3, 2, x.dtype)


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_fallbacks(interpreted):
    assert interpreted['fallback_calls'] == 0


@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_interpreted_depthwise_conv_matches_conv2d(interpreted):
    cases = interpreted['dwconv']
    assert len(cases) == 11
    for name, case in cases.items():
        dtype = name.split('/')[2]
        # bf16: one rounding of the fp32 sum to bf16, which Triton's interpreter does by
        # truncation (up to one ulp, 2**-7 relative; the GPU rounds to nearest)
        tolerance = 1e-5 if dtype == 'float32' else 2**-7
        assert case['diff'] < tolerance * max(1.0, case['scale']), (name, case)
        assert case['shape'] == [int(v) for v in name.split('/')[0].split('x')]
        assert case['dtype'] == dtype and case['channels_last'], (name, case)


def test_dwconv_config_fills_the_lanes():
    """Every variant's widths get lanes of whole channel groups: BLOCK_C divides the lanes and
    C (8 channels at least, masked past C elsewhere); tiles no lane can take are an error."""
    for arch in VMINet.arch_settings:
        for c, w in zip(VMINet(arch).channels, (56, 28, 14, 7)):
            rows, strip, block_c, warps = vmisa_triton.dwconv_config(c, w, w)
            assert (32 * warps) % block_c == 0 and c % block_c == 0, (arch, c)
            assert strip in (7, 14) and rows == w
    assert vmisa_triton.dwconv_config(15, 9, 9)[2] == 8
    assert vmisa_triton.dwconv_config(48, 200, 336)[:2] == (56, 7)
    x = torch.randn(1, 64, 5, 5)
    with pytest.raises(ValueError, match='BLOCK_C = 64 must divide the 32 lanes of 1 warps'):
        vmisa_triton._depthwise_conv_impl(x, torch.randn(49, 64), torch.randn(64), (4, 7, 64, 1))


def test_depthwise_conv_rejects_other_weights():
    x = torch.randn(1, 8, 5, 5)
    with pytest.raises(ValueError, match=r'\(K\*K, C\) tap table .* for C = 8, got \(8, 1, 7, 7\)'):
        vmisa_triton.depthwise_conv(x, torch.randn(8, 1, 7, 7), torch.randn(8))
    with pytest.raises(ValueError, match=r'got \(16, 8\)'):  # an even K
        vmisa_triton.depthwise_conv(x, torch.randn(16, 8), torch.randn(8))
    with pytest.raises(ValueError, match=r'got \(49, 4\)'):
        vmisa_triton.depthwise_conv(x, torch.randn(49, 4), torch.randn(4))


def test_available_only_where_the_kernels_apply():
    x = torch.randn(1, 24, 4, 4)
    assert not vmisa_triton.available(x, 'banded', 'matrix', 48) or vmisa_triton.INTERPRET
    if torch.cuda.is_available() and HAS_TRITON:
        x = x.cuda()
        assert vmisa_triton.available(x, 'banded', 'matrix', 48)
        assert not vmisa_triton.available(x, 'banded', 'recurrent', 48)
        assert not vmisa_triton.available(x.double(), 'banded', 'matrix', 48)
        wide = torch.randn(1, 192, 2, 2, device='cuda')
        assert vmisa_triton.available(wide, 'banded', 'matrix', 384)  # the GEMM pair
        odd = torch.randn(1, vmisa_triton.FUSED_MAX_CHANNELS + 1, 2, 2, device='cuda')
        assert not vmisa_triton.available(odd, 'banded', 'matrix', 2 * odd.shape[1])
        assert vmisa_triton.runs_on(torch.randn(1, 8, 2, 3, device='cuda'))
        assert not vmisa_triton.runs_on(torch.randn(1, 8, 2, 3, device='cuda').double())
    elif not vmisa_triton.INTERPRET:
        assert not vmisa_triton.runs_on(torch.randn(1, 8, 2, 64))


def test_fuse_triton_on_cpu_keeps_pytorch_outputs():
    torch.manual_seed(0)
    model = VMINet('ti', mask_kind='hybrid').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.fuse(triton=True)(x)
    assert all(m.use_triton for m in model.modules() if isinstance(m, VMISA))
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not HAS_TRITON or not hasattr(torch.library, 'triton_op'),
                    reason='the custom ops need triton and torch.library.triton_op')
@pytest.mark.parametrize('size', [224, 256])
def test_fused_forward_graph(monkeypatch, size):
    """The kernel path as torch.compile sees it, traced on the CPU with symbolic shapes (the
    custom ops' fake implementations; nothing runs): one custom op per kernel call, one cast of
    each block's projections under autocast, alpha resized only off its 224 grid, and no 0-d
    tensor into a custom op (inductor's freezing would pass it to the kernel as a number)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    monkeypatch.setattr(vmisa_triton, 'runs_on', lambda x: x.dtype in vmisa_triton.DTYPES)
    model = VMINet('xs').eval().fuse(triton=True)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        graph = make_fx(model, tracing_mode='symbolic', _allow_non_fake_inputs=True)(
            torch.randn(2, 3, size, size)).graph
    nodes = [n for n in graph.nodes if n.op == 'call_function']
    ops = [str(n.target) for n in nodes]
    blocks = sum(model.depths)
    assert ops.count('mmvminet.stem_conv.default') == 1
    assert ops.count('mmvminet.conv.default') == len(model.stages)  # the downsamplers
    assert ops.count('aten.convolution.default') == 0
    assert ops.count('mmvminet.depthwise_conv.default') == blocks
    assert ops.count('mmvminet.vmisa_fused.default') == blocks
    for node in nodes:
        if str(node.target).startswith('mmvminet.'):
            shapes = [a.meta['val'].shape for a in node.args if isinstance(a, torch.fx.Node)]
            assert all(len(shape) for shape in shapes), (node.target, shapes)
    # each block casts one flat buffer (the conv kernels cast their tables inside the ops)
    casts = [n for n in nodes if str(n.target) == 'aten._to_copy.default'
             and n.meta['val'].dtype == torch.bfloat16]
    assert len(casts) == blocks
    # the bilinear resize (decomposed into index ops by the symbolic trace)
    assert any('upsample' in op or 'index' in op for op in ops) == (size != 224)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_gpu_fused_model_matches(dtype):
    torch.manual_seed(0)
    model = VMINet('s', mask_kind='hybrid', out_indices=(0, 1, 2, 3)).cuda().eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 160, device='cuda').to(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = model(x)  # fp32 PyTorch path: the reference for both dtypes
        model.fuse(triton=True)
        with torch.autocast('cuda', dtype, enabled=dtype != torch.float32):
            out = model(x)
    tol = 2e-3 if dtype == torch.float32 else 8e-2
    for a, b in zip(ref, out):
        assert (a - b.float()).abs().max().item() < tol * a.abs().max().item()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_depthwise_kernels_match_conv2d(dtype):
    # VMINet-XS's maps, a detection-like 50x84 map and an odd channel count (masked channels)
    for b, c, h, w in [(8, 48, 56, 56), (4, 96, 28, 28), (4, 192, 14, 14), (4, 384, 7, 7),
                       (2, 40, 50, 84), (2, 15, 9, 9)]:
        torch.manual_seed(c)
        x = torch.randn(b, c, h, w, device='cuda').to(dtype)
        x = x.to(memory_format=torch.channels_last)
        weight, bias = torch.randn(c, 1, 7, 7, device='cuda'), torch.randn(c, device='cuda')
        ref = torch.nn.functional.conv2d(x.float(), weight, bias, padding=3, groups=c)
        out = vmisa_triton.depthwise_conv(x, vmisa_triton.tap_weights(weight), bias)
        assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
        # fp32 sums in another order, then one rounding to dtype (half an ulp)
        rel = {torch.float32: 1e-5, torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
        assert (out.float() - ref).abs().max().item() <= rel * ref.abs().max().item(), (c, h, w)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_stem_kernel_matches_conv2d(dtype):
    # an fp32 batch read as is (channels-last and NCHW), output in dtype; a detection-like size
    for b, h, w, channels_last in [(8, 224, 224, True), (2, 800, 1216, False), (2, 37, 19, True)]:
        torch.manual_seed(h)
        x = torch.randn(b, 3, h, w, device='cuda')
        x = x.to(memory_format=torch.channels_last) if channels_last else x
        weight, bias = torch.randn(32, 3, 3, 3, device='cuda'), torch.randn(32, device='cuda')
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # an fp32 reference
            ref = torch.nn.functional.conv2d(x.to(dtype).float(), weight.to(dtype).float(),
                                             bias, 2, 1).clamp(0, 6)
        out = vmisa_triton.stem_conv(x, vmisa_triton.stem_table(weight), bias, 3, 2, dtype)
        assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
        rel = {torch.float32: 1e-5, torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
        assert (out.float() - ref).abs().max().item() <= rel * 6 + 1e-5, (h, w)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_conv_kernel_matches_conv2d(dtype):
    # VMINet-XS's first two downsamplers at batch 8, a detection-like map, odd sizes, NCHW
    for b, cin, cout, h, w, channels_last in [(8, 32, 48, 112, 112, True),
                                              (8, 48, 96, 56, 56, True),
                                              (2, 96, 192, 100, 152, True),
                                              (2, 48, 96, 37, 19, False)]:
        torch.manual_seed(h)
        x = torch.randn(b, cin, h, w, device='cuda', dtype=dtype)
        x = x.to(memory_format=torch.channels_last) if channels_last else x
        weight = torch.randn(cout, cin, 3, 3, device='cuda') / (3 * cin**0.5)
        bias = torch.randn(cout, device='cuda')
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # an fp32 reference
            ref = torch.nn.functional.conv2d(x.float(), weight.to(dtype).float(), bias, 2, 1)
        out = vmisa_triton.conv(x, vmisa_triton.conv_table(weight), bias, 3, 2)
        assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
        assert out.shape == ref.shape
        rel = {torch.float32: 1e-5, torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
        assert (out.float() - ref).abs().max().item() <= rel * 4 * ref.abs().max().item(), h


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_gpu_torch_compile_traces_the_model_under_autocast():
    torch.manual_seed(0)
    model = VMINet('xs', out_indices=(0, 1, 2, 3)).cuda().eval().fuse(triton=True)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 224, device='cuda').to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast('cuda', torch.bfloat16):
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, dynamic=False)(x)
    for a, b in zip(eager, compiled):
        assert b.dtype == torch.bfloat16
        assert (a.float() - b.float()).abs().max().item() < 2e-2 * a.float().abs().max().item()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_gpu_torch_compile_traces_the_kernels():
    torch.manual_seed(0)
    block = VMISA(48, 2, (28, 28), 'lower_triangular').cuda().eval()  # both kernels run
    block.fuse(triton=True)
    x = torch.randn(8, 48, 28, 28, device='cuda').to(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True, dynamic=False)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('tool', ['benchmark_vmisa.py', 'tune_vmisa_kernels.py'])
def test_block_benchmark_and_tuning_need_cuda(capsys, tool):
    from tool_scripts import load_tool
    bench = load_tool(f'kernels/{tool}')
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    with pytest.raises(SystemExit):
        bench.parse_args([])
    assert 'needs a CUDA device' in capsys.readouterr().err


def test_tuning_rejects_unknown_parts(capsys):
    from tool_scripts import load_tool
    tune = load_tool('kernels/tune_vmisa_kernels.py')
    with pytest.raises(SystemExit):
        tune.parse_args(['--what', 'gemm,splits'])
    valid = 'stem,conv,dwconv,fused,gemm,split'
    assert f'--what: unknown splits; valid: {valid}' in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_gpu_tuning_sweeps_the_kernels(tmp_path):
    from tool_scripts import load_tool
    tune = load_tool('kernels/tune_vmisa_kernels.py')
    out = tmp_path / 'tune.json'
    result = tune.main(['--arch', 'ti', '--batch', '2', '--img-size', '64', '--stages', '0,2',
                        '--warmup', '1', '--iters', '2', '--repeats', '1',
                        '--max-seconds', '40', '--out', str(out)])
    rows = result['stages'][0]['rows']
    wide = result['stages'][1]['rows']  # C = 96: the GEMM pair's default and its sweep
    assert any(r['kind'] == 'gemm' and r.get('sweep') == 'default' and 'us' in r for r in wide)
    for row in wide:
        if row.get('max_abs_diff') is not None:
            assert row['max_abs_diff'] < 0.1, row
    assert {r.get('impl') for r in rows if r['kind'] == 'dwconv'} >= {'cudnn_channels_last',
                                                                      'triton'}
    for row in rows:
        if row.get('max_abs_diff') is not None:
            assert row['max_abs_diff'] < 0.1, row  # bf16
    assert any(r['kind'] == 'fused' and r['config'] == 'default' for r in rows)
    assert {r['impl'] for r in rows if r['kind'] == 'conv'} == {
        'cudnn_channels_last', 'inductor_frozen', 'triton'}
    stem = result['stem']
    assert {r['impl'] for r in stem} == {'cudnn_channels_last', 'cudnn_nchw', 'triton'}
    assert any(r['config'] == 'default' for r in stem if r['impl'] == 'triton')
    for row in stem:
        if row.get('max_abs_diff') is not None:
            assert row['max_abs_diff'] < 0.05, row  # bf16 of values in [0, 6]
    assert json.loads(out.read_text())['stages'][0]['channels'] == 24


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_gpu_tuning_splits_the_kernels(tmp_path):
    from tool_scripts import load_tool
    tune = load_tool('kernels/tune_vmisa_kernels.py')
    result = tune.main(['--arch', 'ti', '--batch', '4', '--img-size', '64', '--stages', '0,2',
                        '--what', 'split', '--warmup', '1', '--iters', '2', '--repeats', '1',
                        '--out', str(tmp_path / 'split.json')])
    fused, gemm = ({r['impl']: r['us'] for r in stage['rows']} for stage in result['stages'])
    assert {'_context_kernel', '_output_kernel'} <= set(fused)  # C = 24: the fused pair
    assert {'_qk_gemm_kernel', '_context_combine_kernel', '_output_gemm_kernel'} <= set(gemm)
    for rows in (fused, gemm):
        assert {'cublas_pass1_shape', 'cublas_pass2_shape', 'copy_MxD'} <= set(rows)
        assert all(us > 0 for us in rows.values())


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason='triton is not installed')
def test_gpu_block_benchmark_runs(tmp_path):
    from tool_scripts import load_tool
    bench = load_tool('kernels/benchmark_vmisa.py')
    out = tmp_path / 'blocks.json'
    rows = bench.main(['--arch', 'ti', '--batch', '8', '--img-size', '64', '--warmup', '1',
                       '--iters', '2', '--repeats', '1', '--compile-mode', 'default',
                       '--out', str(out)])
    assert [r['stage'] for r in rows] == [0, 1, 2, 3]
    for row in rows:
        assert row['triton_max_abs_diff'] < 0.05 * max(1.0, row['output_max_abs'])
        assert row['floor_us'] > 0 and row['triton_us'] > 0
    assert json.loads(out.read_text())['rows'][0]['channels'] == 24
