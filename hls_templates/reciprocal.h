// SPDX-License-Identifier: Apache-2.0
//
// 1/x: normalize |x| by its leading one, seed 1/m from a table on the mantissa's top bits, refine
// with Newton steps y <- y·(2 − m·y) in work_bits-bit fixed point (truncating), scale back by
// the exponent with saturation, restore the sign and assign to out_t.  Step for step the
// integer pipeline of hwgen.golden.nonlinear.reciprocal and of the Amaranth Reciprocal unit;
// widths, constants and the seed table come from a generated config
// (hwgen.hls.nonlinear.reciprocal_config).
#ifndef HWGEN_RECIPROCAL_H_
#define HWGEN_RECIPROCAL_H_

#include <ap_fixed.h>

#include "fixed_raw.h"

namespace hwgen {

// Position of the highest set bit of `value` (0 for 0): a priority encoder.
template <int W>
int leading_one(const ap_uint<W>& value) {
    #pragma HLS INLINE
    int position = 0;
LeadingOne:
    for (int bit = 0; bit < W; bit++) {
        #pragma HLS UNROLL
        if (value[bit]) position = bit;
    }
    return position;
}

// `magnitude` with its leading one (at bit p) moved to bit P, low bits truncated.
template <int P, int W>
ap_uint<P + 1> normalize(const ap_uint<W>& magnitude, int p) {
    #pragma HLS INLINE
    ap_uint<W + P + 1> aligned = magnitude;
    aligned <<= P;
    aligned >>= p;
    return ap_uint<P + 1>(aligned);
}

// y·2^shift (floor), saturated to `limit`: the magnitude of the result in wide_t's codes.
template <class CONFIG_T>
ap_uint<CONFIG_T::wide_width> scale_saturate(const ap_uint<CONFIG_T::work_bits + 2>& y, int shift) {
    #pragma HLS INLINE
    ap_uint<CONFIG_T::work_bits + 2 + CONFIG_T::max_left> scaled = y;
    if (shift >= 0) {
        scaled <<= shift;
    } else {
        scaled >>= -shift;
    }
    if (scaled > ap_uint<CONFIG_T::work_bits + 2 + CONFIG_T::max_left>(CONFIG_T::limit)) scaled = CONFIG_T::limit;
    return ap_uint<CONFIG_T::wide_width>(scaled);
}

// The signed result in wide_t assigned to out_t; `zero` inputs give out_t's largest code.
template <class CONFIG_T>
typename CONFIG_T::out_t finish(const ap_uint<CONFIG_T::wide_width>& magnitude, bool negative, bool zero) {
    #pragma HLS INLINE
    ap_int<CONFIG_T::wide_width + 1> value = magnitude;
    if (negative) value = -value;
    typename CONFIG_T::out_t out;
    out = from_raw<typename CONFIG_T::wide_t>(value);  // the ap_fixed assignment
    if (zero) out = from_raw<typename CONFIG_T::out_t>(ap_int<64>(CONFIG_T::out_max_raw));
    return out;
}

// 1/m for a mantissa m in [2^P, 2^(P+1)) (P = work_bits fraction bits): seed + Newton steps.
template <class CONFIG_T>
ap_uint<CONFIG_T::work_bits + 2> reciprocal_mantissa(const ap_uint<CONFIG_T::work_bits + 1>& mantissa) {
    #pragma HLS INLINE
    const int P = CONFIG_T::work_bits;
    const unsigned index = (mantissa >> (P - CONFIG_T::table_bits)).to_uint() - (1u << CONFIG_T::table_bits);
    ap_uint<P + 2> y = ap_uint<P + 2>(CONFIG_T::seeds[index]) << (P - CONFIG_T::seed_frac_bits);
ReciprocalNewton:
    for (int step = 0; step < CONFIG_T::newton_steps; step++) {
        #pragma HLS UNROLL
        const ap_uint<P + 3> error = (mantissa * y) >> P;
        y = (y * (ap_uint<P + 3>(CONFIG_T::two) - error)) >> P;
    }
    return y;
}

// 1/x of one value.
template <class CONFIG_T>
typename CONFIG_T::out_t reciprocal_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    const int W = CONFIG_T::magnitude_bits;
    const ap_int<W + 1> raw = raw_of(x);
    const bool negative = raw < 0;
    const bool zero = raw == 0;
    ap_uint<W> magnitude = negative ? ap_int<W + 1>(-raw) : raw;
    if (zero) magnitude = 1;
    const int p = leading_one<W>(magnitude);
    const ap_uint<CONFIG_T::work_bits + 1> mantissa = normalize<CONFIG_T::work_bits, W>(magnitude, p);
    const ap_uint<CONFIG_T::work_bits + 2> y = reciprocal_mantissa<CONFIG_T>(mantissa);
    // x = m·2^(p − F_in)  =>  1/x = (1/m)·2^(F_in − p).
    return finish<CONFIG_T>(scale_saturate<CONFIG_T>(y, CONFIG_T::shift_base - p), negative, zero);
}

// 1/x of `lanes` values per call: one beat of the streaming unit.
template <class CONFIG_T>
void reciprocal_lanes(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
ReciprocalLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = reciprocal_lane<CONFIG_T>(in[lane]);
    }
}

} // namespace hwgen

#endif
