// SPDX-License-Identifier: Apache-2.0
//
// Raw-code access to ap_fixed values for the nonlinear units, whose datapaths are integer
// arithmetic on the codes (shifts, exact products, table look-ups) exactly like the golden
// model in hwgen/golden/nonlinear.py.  Only the last step of a unit is an ap_fixed assignment.
#ifndef HWGEN_FIXED_RAW_H_
#define HWGEN_FIXED_RAW_H_

#include <ap_fixed.h>

namespace hwgen {

// The two's-complement code of a signed value, as an integer of the same width.
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
ap_int<W> raw_of(const ap_fixed<W, I, Q, O, N>& x) {
    #pragma HLS INLINE
    ap_uint<W> bits = x.range();
    return ap_int<W>(bits);
}

// The code of an unsigned value.
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
ap_uint<W> raw_of(const ap_ufixed<W, I, Q, O, N>& x) {
    #pragma HLS INLINE
    return x.range();
}

// The value of type T whose code is the low T::width bits of `raw`.
template <class T, class R>
T from_raw(const R& raw) {
    #pragma HLS INLINE
    T value;
    value.range() = raw;
    return value;
}

} // namespace hwgen

#endif
