"""tools/analysis/kernel_resources.py: the depthwise kernels compiled for sm_90a on the CPU."""
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
    block_t, block_c, warps = row['tiles']
    assert row['kernel'] == '_dwconv_bf16_kernel' and row['arch'] == 'sm_90a'
    assert row['spill_bytes'] == 0 and 0 < row['registers'] < 255
    # one kernel row of 7 taps is unrolled: 7 FMAs per output a thread holds
    assert row['opcodes']['FFMA'] == 7 * block_t * block_c // (32 * warps)
    assert json.loads(out.read_text()) == rows


def test_bad_maps_are_rejected(tool):
    for argv in (['--maps', '14x192'], ['--maps', '14:192:3'], ['--tiles', '32,64']):
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
