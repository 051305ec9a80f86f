# SPDX-License-Identifier: Apache-2.0
"""cocotb testbenches run on the emitted Verilog in Verilator (installed as ``hwgen.cosim``)."""
