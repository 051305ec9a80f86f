# SPDX-License-Identifier: Apache-2.0
"""HwParams: validation messages, derived sizes and the fingerprint the Program header carries."""

import zlib

import pytest

from hwgen.hwparams import HwParams


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lanes_in": 0}, r"^lanes_in must be an integer from 1 to 128, not 0$"),
        ({"lanes_out": 2.0}, r"^lanes_out must be an integer from 1 to 128, not 2.0$"),
        ({"acc_bits": 64}, r"^acc_bits must be an integer from 8 to 48, not 64$"),
        ({"act_bits": 12}, r"^act_bits must be one of 8, 16, 32, not 12$"),
        ({"weight_bits": True}, r"^weight_bits must be one of 8, 16, 32, not True$"),
        ({"axi_data_width": 256}, r"^axi_data_width must be one of 64, 128, not 256$"),
        ({"weight_buffer_bytes": 100}, r"^weight_buffer_bytes must be a multiple of the 16-byte AXI word, not 100$"),
        ({"act_buffer_bytes": 8}, r"^act_buffer_bytes must be an integer from 16 to 1073741824, not 8$"),
    ],
)
def test_invalid_parameters_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        HwParams(**changes)


def test_derived_sizes():
    hw = HwParams(lanes_in=8, lanes_out=32, acc_bits=40, act_bits=16, weight_bits=8, axi_data_width=64)
    assert (hw.axi_bytes, hw.act_bytes, hw.weight_bytes, hw.bias_bytes, hw.macs_per_cycle) == (8, 2, 1, 8, 256)
    assert hw.align(1) == 8 and hw.align(16) == 16
    assert hw.tile_stride(1) == 256
    assert HwParams(lanes_in=3, lanes_out=5, axi_data_width=128).tile_stride(1) == 16  # 15 bytes padded to a word


def test_fingerprint_is_the_documented_crc():
    hw = HwParams()
    text = ("hwgen-hw-1;lanes_in=16;lanes_out=16;acc_bits=32;act_bits=16;weight_bits=8;act_buffer_bytes=4096;"
            "weight_buffer_bytes=65536;axi_data_width=128;gelu_int_bits=5;layernorm_int_bits=6;"
                "layernorm_out_int_bits=5;layernorm_param_int_bits=4;softmax_int_bits=6")
    assert hw.canonical() == text
    assert hw.fingerprint() == zlib.crc32(text.encode("ascii"))
    variants = [HwParams(lanes_in=8), HwParams(acc_bits=48), HwParams(axi_data_width=64), HwParams(weight_buffer_bytes=32768)]
    assert len({hw.fingerprint()} | {v.fingerprint() for v in variants}) == 5


def test_from_dict_round_trip():
    hw = HwParams(lanes_in=8, lanes_out=32)
    assert HwParams.from_dict(hw.to_dict()) == hw
    with pytest.raises(ValueError, match=r"^hardware parameter must be one of lanes_in, .*, not 'lanes'$"):
        HwParams.from_dict({"lanes": 4})
