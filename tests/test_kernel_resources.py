"""tools/analysis/kernel_resources.py: the depthwise kernel compiled for sm_90a on the CPU."""
import json

import pytest
from tool_scripts import load_tool

from mmvminet.models import vmisa_triton

pytestmark = pytest.mark.skipif(vmisa_triton.triton is None, reason='triton is not installed')


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis/kernel_resources.py')


def test_stage2_kernel_has_no_spills_and_one_fma_per_output_tap(tool, tmp_path):
    out = tmp_path / 'res.json'
    rows = tool.main(['--maps', '14:192', '--out', str(out)])
    (row, ) = rows
    _, block_w, block_c, warps = row['tiles']
    assert row['kernel'] == '_dwconv_kernel' and row['arch'] == 'sm_90a'
    # 16 outputs per thread in 7 accumulators: at most a few spilled registers (40 bytes with
    # Triton 3.8's ptxas; the tiles are the fastest on the H200 all the same)
    assert row['spill_bytes'] <= 64 and 0 < row['registers'] <= 255
    # one input row is unrolled: 7 column shifts into 7 accumulators, 49 FMAs per output a
    # thread holds; each weight is loaded once for all of a thread's tokens, so loads stay far
    # below the FMAs; a layout change through shared memory (LDS) at most per column shift
    outputs = block_w * block_c // (32 * warps)
    opcodes = row['opcodes']
    assert opcodes['FFMA'] == 49 * outputs
    assert opcodes['LDG'] * 8 < opcodes['FFMA'] and opcodes.get('LDS', 0) <= 2 * 7
    assert json.loads(out.read_text()) == rows


def test_bad_maps_are_rejected(tool):
    for argv in (['--maps', '14x192'], ['--maps', '14:192:3'], ['--tiles', '16,32,64']):
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
