"""tools/analysis/get_flops.py: totals and the split by part of a segmentor."""
import pytest
from tool_scripts import load_tool


def test_parts_add_up_to_the_total():
    flops = load_tool('analysis/get_flops.py')
    result = flops.analyse('configs/upernet_vminet_xs_160k_ade20k.py', (128, 128))
    parts = result['parts_flops_g']
    assert list(parts) == ['backbone', 'neck', 'decode_head']  # the auxiliary head: training only
    assert all(g > 0 for g in parts.values())
    # the segmentor's tensor forward is backbone -> neck -> decode head, plus a little work of
    # its own outside them
    assert 0.999 * result['flops_g'] < sum(parts.values()) <= result['flops_g']
    assert result['total_flops_g'] == pytest.approx(result['flops_g']
                                                    + result['vmisa_elementwise_g'])
    assert result['vmisa_elementwise_g'] > 0
