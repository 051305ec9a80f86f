// SPDX-License-Identifier: Apache-2.0
//
// exp(x) for x <= 0 as 2^(x·log2 e) = 2^n · 2^f: a right shift times a table of 2^f with linear
// interpolation.  Step for step the integer pipeline of hwgen.golden.nonlinear.exp (and of the
// Amaranth Exp unit): clamp, multiply by log2(e), round to y, split y into n and f, look up and
// interpolate 2^f, shift right by -n, then assign the result to out_t.  The table and every
// width come from a generated config (hwgen.hls.nonlinear.exp_config).
#ifndef HWGEN_EXP_H_
#define HWGEN_EXP_H_

#include <ap_fixed.h>

#include "fixed_raw.h"

namespace hwgen {

// exp of one value.  CONFIG_T provides in_t, out_t, wide_t, the widths and constants named
// below, and table[segments + 1] (2^(k/segments) with table_frac_bits fraction bits).
template <class CONFIG_T>
typename CONFIG_T::out_t exp_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    const ap_int<CONFIG_T::in_width> raw = raw_of(x);
    ap_int<CONFIG_T::clamped_bits> clamped;
    if (raw > 0) {
        clamped = 0;  // exp of a positive input is taken as exp(0)
    } else if (raw < CONFIG_T::clamp_raw) {
        clamped = CONFIG_T::clamp_raw;  // every result below the clamp is 0 anyway
    } else {
        clamped = raw;
    }
    const ap_int<CONFIG_T::product_bits> product = clamped * ap_uint<CONFIG_T::log2e_bits>(CONFIG_T::log2e_raw);

    // y = x·log2(e) rounded to y_frac_bits fraction bits (ties up); n = floor(y) <= 0.
    ap_int<CONFIG_T::y_bits> y;
    if (CONFIG_T::y_shift > 0) {
        y = (ap_int<CONFIG_T::product_bits + 1>(product) + CONFIG_T::y_half) >> CONFIG_T::y_shift;
    } else {
        y = ap_int<CONFIG_T::y_bits>(product) << (-CONFIG_T::y_shift);
    }
    const ap_int<CONFIG_T::n_bits> n = y >> CONFIG_T::y_frac_bits;
    const ap_uint<CONFIG_T::y_frac_bits> fraction = y.range(CONFIG_T::y_frac_bits - 1, 0);
    const unsigned index = (fraction >> CONFIG_T::interp_bits).to_uint();

    // 2^f: the table entry, plus the slope to the next entry times the remaining fraction bits.
    const ap_uint<CONFIG_T::base_bits> base = CONFIG_T::table[index];
    ap_uint<CONFIG_T::base_bits> mantissa = base;
    if (CONFIG_T::interp_bits > 0) {
        const ap_uint<CONFIG_T::base_bits> slope = ap_uint<CONFIG_T::base_bits>(CONFIG_T::table[index + 1]) - base;
        const ap_uint<CONFIG_T::interp_bits + 1> weight = fraction & ap_uint<CONFIG_T::y_frac_bits>(CONFIG_T::interp_mask);
        mantissa = base + ((slope * weight) >> CONFIG_T::interp_bits);
    }

    // 2^n: shift right by -n plus the fixed offset between the table's and the output's bits.
    const ap_uint<CONFIG_T::value_bits> value = ap_uint<CONFIG_T::value_bits>(mantissa) << CONFIG_T::lift;
    ap_int<CONFIG_T::n_bits + 8> amount = ap_int<CONFIG_T::n_bits + 8>(CONFIG_T::offset) - n;
    if (amount > CONFIG_T::limit) amount = CONFIG_T::limit;
    const ap_uint<CONFIG_T::value_bits> wide = value >> amount.to_int();
    typename CONFIG_T::out_t out;
    out = from_raw<typename CONFIG_T::wide_t>(wide);  // the ap_fixed assignment
    return out;
}

// exp of `lanes` values per call: one beat of the streaming unit.
template <class CONFIG_T>
void exp_lanes(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
ExpLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = exp_lane<CONFIG_T>(in[lane]);
    }
}

} // namespace hwgen

#endif
