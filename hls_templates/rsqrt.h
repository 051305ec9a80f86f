// SPDX-License-Identifier: Apache-2.0
//
// 1/√x: normalize x to m·2^odd·4^e (m in [1, 2), odd in {0, 1}), seed 1/√(m·2^odd) from a
// table indexed by the parity and the mantissa's top bits, refine with Newton steps
// y <- y·(3 − s·y²)/2 in work_bits-bit fixed point (truncating), scale by 2^-e with saturation and
// assign to out_t.  Step for step hwgen.golden.nonlinear.rsqrt and the Amaranth Rsqrt unit.
#ifndef HWGEN_RSQRT_H_
#define HWGEN_RSQRT_H_

#include <ap_fixed.h>

#include "fixed_raw.h"
#include "reciprocal.h"

namespace hwgen {

// y and e with 1/√x ≈ y·2^-(work_bits + e), for x = magnitude·2^-frac_bits, magnitude >= 1.
template <class CONFIG_T, int W>
void rsqrt_mantissa(const ap_uint<W>& magnitude, int frac_bits, ap_uint<CONFIG_T::work_bits + 2>& y, int& half) {
    #pragma HLS INLINE
    const int P = CONFIG_T::work_bits;
    const int half_bits = CONFIG_T::table_bits - 1;
    const int p = leading_one<W>(magnitude);
    const ap_uint<P + 1> mantissa = normalize<P, W>(magnitude, p);
    const int exponent = p - frac_bits;
    const int odd = exponent & 1;
    half = (exponent - odd) / 2;  // exact: even
    const unsigned index = (odd << half_bits) + (mantissa >> (P - half_bits)).to_uint() - (1u << half_bits);
    const ap_uint<P + 2> scaled = ap_uint<P + 2>(mantissa) << odd;
    y = ap_uint<P + 2>(CONFIG_T::seeds[index]) << (P - CONFIG_T::seed_frac_bits);
RsqrtNewton:
    for (int step = 0; step < CONFIG_T::newton_steps; step++) {
        #pragma HLS UNROLL
        const ap_uint<P + 3> square = (y * y) >> P;
        const ap_uint<P + 4> error = (scaled * square) >> P;
        y = (y * (ap_uint<P + 4>(CONFIG_T::three) - error)) >> (P + 1);
    }
}

// 1/√x of one value (x <= 0 gives out_t's largest code).
template <class CONFIG_T>
typename CONFIG_T::out_t rsqrt_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    const int W = CONFIG_T::magnitude_bits;
    const ap_int<W + 1> raw = raw_of(x);
    const bool zero = raw <= 0;
    const ap_uint<W> magnitude = zero ? ap_int<W + 1>(1) : raw;
    ap_uint<CONFIG_T::work_bits + 2> y;
    int half;
    rsqrt_mantissa<CONFIG_T, W>(magnitude, CONFIG_T::in_frac_bits, y, half);
    return finish<CONFIG_T>(scale_saturate<CONFIG_T>(y, CONFIG_T::shift_base - half), false, zero);
}

// 1/√x of `lanes` values per call: one beat of the streaming unit.
template <class CONFIG_T>
void rsqrt_lanes(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
RsqrtLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = rsqrt_lane<CONFIG_T>(in[lane]);
    }
}

} // namespace hwgen

#endif
