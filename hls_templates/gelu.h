// SPDX-License-Identifier: Apache-2.0
//
// GELU as ReLU(x) − δ(|x|).  gelu_table_lane: Edge-MoE's form, δ tabulated every 2^-step_log2
// with linear interpolation; gelu_poly_lane: δ as a quadratic per segment, Horner on integers.
// ReLU(x) − δ̂ is formed exactly in result_t and assigned to out_t once.  Step for step
// hwgen.golden.nonlinear.gelu and the Amaranth Gelu unit; tables and widths come from a
// generated config (hwgen.hls.nonlinear.gelu_config).
#ifndef HWGEN_GELU_H_
#define HWGEN_GELU_H_

#include <ap_fixed.h>

#include "fixed_raw.h"

namespace hwgen {

// value·2^shift, flooring when shift < 0.
template <int W, class T>
ap_int<W> shift_by(const T& value, int shift) {
    #pragma HLS INLINE
    ap_int<W> wide = value;
    if (shift >= 0) return wide << shift;
    return wide >> (-shift);
}

// |x| split at the segment step: the index and the bits below it.
template <class CONFIG_T>
void split_magnitude(const ap_int<CONFIG_T::in_width>& raw, ap_uint<CONFIG_T::in_width + 8>& index, ap_uint<CONFIG_T::in_width>& fraction) {
    #pragma HLS INLINE
    const ap_uint<CONFIG_T::in_width> magnitude = raw < 0 ? ap_int<CONFIG_T::in_width + 1>(-raw) : ap_int<CONFIG_T::in_width + 1>(raw);
    if (CONFIG_T::fraction_bits > 0 || CONFIG_T::index_lift == 0) {
        index = magnitude >> CONFIG_T::fraction_bits;
        fraction = magnitude & ap_uint<CONFIG_T::in_width>(CONFIG_T::fraction_mask);
    } else {
        index = ap_uint<CONFIG_T::in_width + 8>(magnitude) << CONFIG_T::index_lift;
        fraction = 0;
    }
}

// ReLU(x) − δ̂ (δ̂ with delta_frac fraction bits) in result_t, assigned to out_t.
template <class CONFIG_T>
typename CONFIG_T::out_t gelu_finish(const ap_int<CONFIG_T::in_width>& raw, const ap_int<CONFIG_T::delta_bits>& delta) {
    #pragma HLS INLINE
    const ap_int<CONFIG_T::in_width + 1> relu = raw > 0 ? ap_int<CONFIG_T::in_width + 1>(raw) : ap_int<CONFIG_T::in_width + 1>(0);
    const ap_int<CONFIG_T::result_width + 2> value =
        shift_by<CONFIG_T::result_width + 2>(relu, CONFIG_T::relu_shift) - shift_by<CONFIG_T::result_width + 2>(delta, CONFIG_T::delta_shift);
    typename CONFIG_T::out_t out;
    out = from_raw<typename CONFIG_T::result_t>(value);  // the ap_fixed assignment
    return out;
}

// Edge-MoE's table GELU of one value: table[segments + 1] holds δ(k·step).
template <class CONFIG_T>
typename CONFIG_T::out_t gelu_table_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    const ap_int<CONFIG_T::in_width> raw = raw_of(x);
    ap_uint<CONFIG_T::in_width + 8> index;
    ap_uint<CONFIG_T::in_width> fraction;
    split_magnitude<CONFIG_T>(raw, index, fraction);
    ap_int<CONFIG_T::delta_bits> delta = 0;
    if (index < CONFIG_T::segments) {
        const unsigned i = index.to_uint();
        const ap_int<CONFIG_T::delta_bits> base = CONFIG_T::table[i];
        const ap_int<CONFIG_T::delta_bits> slope = ap_int<CONFIG_T::delta_bits>(CONFIG_T::table[i + 1]) - base;
        delta = (base << CONFIG_T::fraction_bits) + slope * fraction;
    }
    return gelu_finish<CONFIG_T>(raw, delta);
}

// Piecewise-quadratic GELU of one value: coefficients[3·k + j] is c_j of segment k.
template <class CONFIG_T>
typename CONFIG_T::out_t gelu_poly_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    const ap_int<CONFIG_T::in_width> raw = raw_of(x);
    ap_uint<CONFIG_T::in_width + 8> index;
    ap_uint<CONFIG_T::in_width> fraction;
    split_magnitude<CONFIG_T>(raw, index, fraction);
    ap_int<CONFIG_T::delta_bits> delta = 0;
    if (index < CONFIG_T::segments) {
        const unsigned i = index.to_uint();
        const ap_int<CONFIG_T::coef_bits> c0 = CONFIG_T::coefficients[3 * i];
        const ap_int<CONFIG_T::coef_bits> c1 = CONFIG_T::coefficients[3 * i + 1];
        const ap_int<CONFIG_T::coef_bits> c2 = CONFIG_T::coefficients[3 * i + 2];
        const ap_int<CONFIG_T::coef_bits + 2> inner = ((c2 * fraction) >> CONFIG_T::fraction_bits) + c1;
        const ap_int<CONFIG_T::delta_bits> horner = ((inner * fraction) >> CONFIG_T::fraction_bits) + c0;
        if (horner > 0) delta = horner;
    }
    return gelu_finish<CONFIG_T>(raw, delta);
}

// The GELU of one value in the form the config names (CONFIG_T::polynomial: 0 table, 1 quadratics).
template <class CONFIG_T, int POLYNOMIAL = CONFIG_T::polynomial>
struct GeluForm {
    static typename CONFIG_T::out_t lane(const typename CONFIG_T::in_t& x) { return gelu_table_lane<CONFIG_T>(x); }
};

template <class CONFIG_T>
struct GeluForm<CONFIG_T, 1> {
    static typename CONFIG_T::out_t lane(const typename CONFIG_T::in_t& x) { return gelu_poly_lane<CONFIG_T>(x); }
};

template <class CONFIG_T>
typename CONFIG_T::out_t gelu_lane(const typename CONFIG_T::in_t& x) {
    #pragma HLS INLINE
    return GeluForm<CONFIG_T>::lane(x);
}

template <class CONFIG_T>
void gelu_table_lanes(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
GeluLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = gelu_table_lane<CONFIG_T>(in[lane]);
    }
}

template <class CONFIG_T>
void gelu_poly_lanes(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
GeluLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = gelu_poly_lane<CONFIG_T>(in[lane]);
    }
}

} // namespace hwgen

#endif
