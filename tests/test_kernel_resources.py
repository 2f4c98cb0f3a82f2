"""tools/kernels/kernel_resources.py: the depthwise kernel compiled for sm_90a on the CPU."""
import json

import pytest
from tool_scripts import load_tool

from mmvminet.models import vmisa_triton

pytestmark = pytest.mark.skipif(vmisa_triton.triton is None, reason='triton is not installed')


@pytest.fixture(scope='module')
def tool():
    return load_tool('kernels/kernel_resources.py')


def test_stage2_kernel_has_no_spills_and_one_fma_per_output_tap(tool, tmp_path):
    out = tmp_path / 'res.json'
    rows = tool.main(['--maps', '14:192', '--out', str(out)])
    (row, ) = rows
    _, strip, block_c, warps = row['tiles']
    assert row['kernel'] == '_dwconv_kernel' and row['arch'] == 'sm_90a'
    assert row['spill_bytes'] == 0 and 0 < row['registers'] <= 255
    # one input row is unrolled: a lane adds each of its STRIP + 6 input columns, at 7 column
    # shifts, into 7 rows of STRIP accumulators (49 FMAs per output column, a few more in the
    # bias and edge code); it loads those columns per row, and its 49 taps and bias once, not
    # per row (a strip as wide as the map loads no halo: its columns past the edges are
    # constant padding); no layout change through shared memory
    opcodes = row['opcodes']
    assert abs(opcodes['FFMA'] - 49 * strip) <= 16
    assert opcodes['LDG'] == min(strip + 6, 14) + 49 + 1
    assert opcodes.get('LDS', 0) == 0 and opcodes.get('STS', 0) == 0
    # the stage-2 grid: one row tile, 256 images in groups, 14 / STRIP strips, 192 / BLOCK_C
    # channel groups
    images = 32 * warps // block_c
    assert row['programs'] == -(-256 // images) * -(-14 // strip) * (192 // block_c)
    per_sm = row['warps_per_sm'] // warps
    assert row['waves'] == pytest.approx(row['programs'] / (per_sm * 132))
    assert json.loads(out.read_text()) == rows


def test_occupancy_counts_registers_per_warp(tool):
    # 168 registers: 5376 per warp, 12 warps of 64K; 1536 one-warp programs fill 0.97 of a wave
    assert tool.occupancy(168, 1, 1536, 132) == dict(programs=1536, warps_per_sm=12,
                                                     waves=pytest.approx(1536 / 1584))
    # 2-warp programs at 112 registers: 18 warps, 9 programs per SM
    assert tool.occupancy(112, 2, 3072, 132)['waves'] == pytest.approx(3072 / (9 * 132))
    # few registers: 32 programs per SM at most; 105 rounds up to 112 per thread
    assert tool.occupancy(40, 1, 10, 132)['warps_per_sm'] == 32
    assert tool.occupancy(105, 1, 10, 132)['warps_per_sm'] == 18


def test_bad_maps_are_rejected(tool):
    for argv in (['--maps', '14x192'], ['--maps', '14:192:3'], ['--tiles', '16,32,64']):
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
