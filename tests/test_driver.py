# SPDX-License-Identifier: Apache-2.0
"""The host driver's plain-Python path: the same steps as on a PYNQ board, against ``isa_sim``.

The folder is the one ``hwgen build`` writes (memory.bin/.json, program.bin, golden.npz, hwgen.yaml
from the same functions), without the RTL and vendor files the driver never reads. The driver is
loaded from the file a build ships (``driver/hwgen_driver.py``) as a standalone module. Checked:
its register map is the RTL core's; the register writes, their order and the buffer placement; the
cycles and outputs it reports; that it notices a wrong output code, a corrupted golden.npz, a core
built for other parameters (before starting it), a descriptor the hardware refuses (its status
code, as docs/isa.md §3.7 defines it for every executor) and a core that never finishes.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys

import numpy as np
import pytest

from hwgen import driver as driver_source
from hwgen.build import compile_for, golden_npz
from hwgen.hwparams import HwParams
from hwgen.isa import Status
from hwgen.rtl import axi

CASES = {"mlp-tiny 16x16": ("mlp-tiny", HwParams()),
         "mlp-odd 8x8 axi64": ("mlp-odd", HwParams(lanes_in=8, lanes_out=8, axi_data_width=64))}


@pytest.fixture(scope="module")
def shipped():
    """``driver/hwgen_driver.py`` as a build ships it, imported as a module of its own."""
    spec = importlib.util.spec_from_file_location("hwgen_driver", driver_source.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hwgen_driver"] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules["hwgen_driver"]


@pytest.fixture(scope="module", params=list(CASES))
def folder(request, tmp_path_factory):
    """(folder, compiled, hw) of one model and accelerator, with the files a build writes."""
    model, hw = CASES[request.param]
    compiled = compile_for(model, hw)
    path = tmp_path_factory.mktemp("drv")
    for name, data in compiled.files().items():
        (path / name).write_bytes(data)
    (path / "hwgen.yaml").write_text(json.dumps({"accelerator": hw.to_dict()}))
    return path, compiled, hw


def test_register_map_is_the_rtl_cores(shipped):
    assert shipped.REGISTERS == axi.REGISTER_MAP
    assert (shipped.CONTROL_START, shipped.CONTROL_DONE, shipped.CONTROL_IDLE, shipped.CONTROL_ERROR) == (
        axi.CONTROL_START, axi.CONTROL_DONE, axi.CONTROL_IDLE, axi.CONTROL_ERROR)
    assert shipped.STATUS_NAMES == tuple(status.name for status in Status)
    assert {name: code for code, name in enumerate(shipped.STATUS_NAMES)} == axi.STATUS_CODES
    # pynq is imported only on the board path.
    assert "pynq" not in sys.modules
    with pytest.raises(ModuleNotFoundError, match="pynq"):
        shipped.PynqDevice("hwgen.bit")


def test_plain_python_run_passes_with_the_register_sequence_of_the_isa(shipped, folder):
    path, compiled, hw = folder
    device = shipped.IsaSimDevice(hw)
    result = shipped.HwgenDriver(path, device).run()
    assert result.passed and result.status == 0, result.summary()
    assert result.cycles == compiled.reference.total_cycles
    assert result.cycles - result.stalls == sum(c.ideal for c in compiled.reference.cycles)
    assert result.descriptors_done == len(compiled.program.descriptors)
    outputs = [r for r in compiled.image.regions if r.kind == "output"]
    assert [(o.name, o.shape, o.mismatches) for o in result.outputs] == [(r.name, r.shape, 0) for r in outputs]
    # One buffer holding the image; the Program address and image base point at it; start comes last.
    (buffer,) = device.buffers
    base = buffer.physical_address
    assert base % 4096 == 0 and buffer.size == len(compiled.image.data)
    assert device.writes == [("PROGRAM_ADDR", base), ("IMAGE_BASE", base), ("ISR", 1), ("CONTROL", 1), ("ISR", 1)]
    # What the driver read back is the image after the run, equal to the golden one byte for byte.
    assert buffer.tobytes() == compiled.expected
    assert "PASS" in result.summary()


def test_a_wrong_output_code_is_reported(shipped, folder):
    path, compiled, hw = folder
    region = next(r for r in compiled.image.regions if r.kind == "output")
    # Element [0, 5]: byte offset 5 containers into the first row.
    offset = region.offset + 5 * region.container_bits // 8
    result = shipped.HwgenDriver(path, shipped.IsaSimDevice(hw, flip_byte=offset)).run()
    assert not result.passed and result.status == 0
    (check,) = [o for o in result.outputs if o.name == region.name]
    want = int(compiled.values[region.name].reshape(-1, region.shape[-1])[0, 5])
    index = ", ".join(map(str, np.unravel_index(5, region.shape)))
    assert check.mismatches == 1
    assert check.first == f"{region.name}[{index}]: got {want ^ 1}, golden {want}"
    assert "FAIL" in result.summary()


def test_a_corrupted_golden_npz_fails_the_run(shipped, folder, tmp_path):
    path, compiled, hw = folder
    for name in ("memory.bin", "memory.json"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    golden = compiled.golden()
    out = next(r.name for r in compiled.image.regions if r.kind == "output")
    golden[out] = golden[out].copy()
    golden[out].flat[-1] -= 1
    (tmp_path / "golden.npz").write_bytes(golden_npz(golden))
    result = shipped.HwgenDriver(tmp_path, shipped.IsaSimDevice(hw)).run()
    assert not result.passed and [o.mismatches for o in result.outputs] == [1]
    # The command-line entry point says the same with its exit status.
    (tmp_path / "hwgen.yaml").write_text((path / "hwgen.yaml").read_text())
    assert shipped.main(["--isa-sim", "--folder", str(tmp_path)]) == 1
    assert shipped.main(["--isa-sim", "--folder", str(path)]) == 0


def test_the_isa_sim_device_refuses_what_the_board_refuses(shipped, folder, tmp_path):
    """A descriptor the hardware refuses stops the run with its status code, like the cores (docs/isa.md §3.7)."""
    path, compiled, hw = folder
    for name in ("memory.json", "golden.npz", "hwgen.yaml"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    image = bytearray(compiled.image.data)
    last = len(compiled.program.descriptors) - 1
    word = 64 + 64 * last + 4 * 4  # x_addr of the last descriptor: point it past the image
    struct.pack_into("<I", image, word, len(image) // 64 * 64)
    (tmp_path / "memory.bin").write_bytes(bytes(image))
    result = shipped.HwgenDriver(tmp_path, shipped.IsaSimDevice(hw)).run()
    assert (result.status, result.status_name, result.descriptors_done) == (
        int(Status.OUT_OF_BOUNDS), "OUT_OF_BOUNDS", last)
    assert not result.passed and "status 9 OUT_OF_BOUNDS" in result.summary()


def test_a_core_built_for_other_parameters_is_refused_before_start(shipped, folder):
    path, _, hw = folder
    other = HwParams(lanes_in=hw.lanes_in, lanes_out=hw.lanes_out, axi_data_width=hw.axi_data_width,
                     weight_buffer_bytes=hw.weight_buffer_bytes * 2)
    device = shipped.IsaSimDevice(other)
    with pytest.raises(shipped.DriverError, match=rf"FINGERPRINT must be the Program's {hw.fingerprint():#010x}, "
                                                  rf"not {other.fingerprint():#010x}"):
        shipped.HwgenDriver(path, device).run()
    assert device.writes == [] and device.buffers == []


def test_a_core_that_never_finishes_times_out(shipped, folder):
    path, _, hw = folder

    class Stuck(shipped.IsaSimDevice):
        def _run(self):
            pass  # started, never done

    device = Stuck(hw)
    with pytest.raises(shipped.DriverError, match=r"did not finish within 0.05 s \(0 descriptors done\)"):
        shipped.HwgenDriver(path, device).run(timeout_s=0.05)


def test_a_folder_without_the_build_files_is_refused(shipped, tmp_path):
    with pytest.raises(shipped.DriverError, match="must hold memory.bin, memory.json and golden.npz"):
        shipped.HwgenDriver(tmp_path, None)


def test_feature_map_outputs_are_read_channels_last(shipped, tmp_path):
    """A convolution's output is an HWC region (docs/isa.md §4): the driver reads it back into (C, H, W)
    and names a wrong code by its (c, y, x)."""
    import yaml

    spec = {"name": "conv-out", "inputs": {"img": {"shape": [3, 8, 8]}},
            "layers": [{"name": "conv", "op": "Conv2d", "input": "img", "channels": 5, "kernel": 2, "stride": 2}],
            "outputs": ["conv"]}
    (tmp_path / "conv.yaml").write_text(yaml.safe_dump(spec))
    hw = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
    compiled = compile_for(tmp_path / "conv.yaml", hw)
    region = compiled.image.region("conv")
    assert region.layout == "hwc" and region.shape == (5, 4, 4)
    path = tmp_path / "folder"
    path.mkdir()
    for name, data in compiled.files().items():
        (path / name).write_bytes(data)
    result = shipped.HwgenDriver(path, shipped.IsaSimDevice(hw)).run()
    assert result.passed, result.summary()
    # Pixel (y, x) = (1, 2) is row 6; its channel 3.
    offset = region.offset + 6 * region.row_stride + 3 * hw.act_bytes
    result = shipped.HwgenDriver(path, shipped.IsaSimDevice(hw, flip_byte=offset)).run()
    (check,) = result.outputs
    want = int(compiled.values["conv"][3, 1, 2])
    assert check.mismatches == 1 and check.first == f"conv[3, 1, 2]: got {want ^ 1}, golden {want}"


def test_bordered_feature_map_outputs_are_read_without_their_border(shipped, tmp_path):
    """An output also read by a padded convolution lies in DDR with a zero border (docs/isa.md §4, memory.json's
    ``pad``): the driver reads its interior and names a wrong code by its unbordered (c, y, x)."""
    import yaml

    spec = {"name": "conv-pad", "inputs": {"img": {"shape": [3, 8, 8]}},
            "layers": [{"name": "conv", "op": "Conv2d", "input": "img", "channels": 5, "kernel": 2, "stride": 2},
                       {"name": "next", "op": "Conv2d", "input": "conv", "channels": 4, "kernel": 3, "padding": 1}],
            "outputs": ["conv", "next"]}
    (tmp_path / "conv.yaml").write_text(yaml.safe_dump(spec))
    hw = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
    compiled = compile_for(tmp_path / "conv.yaml", hw)
    region = compiled.image.region("conv")
    assert region.layout == "hwc" and region.shape == (5, 4, 4) and region.pad == (1, 1)
    path = tmp_path / "folder"
    path.mkdir()
    for name, data in compiled.files().items():
        (path / name).write_bytes(data)
    assert shipped.HwgenDriver(path, shipped.IsaSimDevice(hw)).run().passed
    # Pixel (y, x) = (1, 2) is row (1 + 1)·6 + 2 + 1 = 15 of the bordered map; its channel 3.
    offset = region.offset + 15 * region.row_stride + 3 * hw.act_bytes
    result = shipped.HwgenDriver(path, shipped.IsaSimDevice(hw, flip_byte=offset)).run()
    check = next(c for c in result.outputs if c.name == "conv")
    want = int(compiled.values["conv"][3, 1, 2])
    assert check.mismatches == 1 and check.first == f"conv[3, 1, 2]: got {want ^ 1}, golden {want}"
