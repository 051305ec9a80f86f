// SPDX-License-Identifier: Apache-2.0
//
// The unified compute unit: a lanes_in x lanes_out MAC array with acc_bits accumulators and its
// post-processing lanes (requantize, ReLU, GELU, residual add, requantize, ReLU), as in Edge-MoE's linear
// unit: output-stationary, one lanes_in x lanes_out weight tile per cycle, the (output tile,
// reduction step) loops flattened into one II=1 pipeline.
#ifndef HWGEN_COMPUTE_UNIT_H_
#define HWGEN_COMPUTE_UNIT_H_

#include <ap_int.h>

#include "fixed_raw.h"
#include "gelu.h"
#include "requantize_rt.h"

namespace hwgen {

// Element types and on-chip buffer shapes derived from an accelerator config.
template <class CONFIG_T>
struct accel_types {
    static const unsigned axi_bytes = CONFIG_T::axi_bits / 8;
    static const unsigned act_bytes = CONFIG_T::act_bits / 8;
    static const unsigned weight_bytes = CONFIG_T::weight_bits / 8;
    static const unsigned bias_bytes = CONFIG_T::bias_bits / 8;
    // A weight-bank element holds a weight or, for B_ROWMAJOR, an activation.
    static const unsigned operand_bits = CONFIG_T::act_bits > CONFIG_T::weight_bits ? CONFIG_T::act_bits : CONFIG_T::weight_bits;
    // Activation-bank rows hold lanes_in elements, or lanes_out on the BYPASS path.
    static const unsigned x_lanes = CONFIG_T::lanes_in > CONFIG_T::lanes_out ? CONFIG_T::lanes_in : CONFIG_T::lanes_out;
    static const unsigned row_elements = CONFIG_T::row_tiles * CONFIG_T::lanes_out;
    static const unsigned bias_elements = CONFIG_T::weight_tiles * CONFIG_T::lanes_out;

    typedef ap_uint<CONFIG_T::axi_bits> word_t;
    typedef ap_uint<CONFIG_T::act_bits> act_raw_t;    // an activation container as stored in DDR
    typedef ap_uint<CONFIG_T::bias_bits> bias_raw_t;  // a bias container
    // Operands are sign- or zero-extended when they are loaded, so the array is signed only.
    typedef ap_int<CONFIG_T::act_bits + 1> x_t;
    typedef ap_int<operand_bits + 1> w_t;
    typedef ap_int<CONFIG_T::acc_bits> acc_t;
};

// The post-processing of one LINEAR descriptor, decoded once per descriptor.
struct post_ops {
    requant_word rq1;
    requant_word rq2;
    bool relu1;
    bool gelu;
    bool residual;
    bool relu2;
    bool r_unsigned;
    ap_uint<8> y_shift;
    ap_uint<8> r_shift;
};

// A BITS-bit container, sign-extended (or zero-extended when is_unsigned) into T.
template <class T, int BITS>
T extend(ap_uint<BITS> raw, bool is_unsigned) {
    #pragma HLS INLINE
    return is_unsigned ? T(raw) : T(ap_int<BITS>(raw));
}

// v << amount in acc_bits two's complement; amounts past the width leave nothing.
template <class CONFIG_T>
typename accel_types<CONFIG_T>::acc_t shift_into_acc(typename accel_types<CONFIG_T>::acc_t v, ap_uint<8> amount) {
    #pragma HLS INLINE
    typedef typename accel_types<CONFIG_T>::acc_t acc_t;
    return amount < CONFIG_T::acc_bits ? acc_t(v << amount.to_uint()) : acc_t(0);
}

// The GELU lane of CONFIG_T::gelu (gelu.h: Edge-MoE's table, or quadratics past 13 fraction bits):
// the low act_bits bits of y are a code of the GELU format, sign-extended, replaced by their GELU's code.
template <class CONFIG_T>
requant_value_t gelu_post(const requant_value_t& y) {
    #pragma HLS INLINE
    typedef typename CONFIG_T::gelu gelu_config;
    const ap_uint<CONFIG_T::act_bits> code = y.range(CONFIG_T::act_bits - 1, 0);
    return raw_of(gelu_lane<gelu_config>(from_raw<typename gelu_config::in_t>(code)));
}

// RQ1, RELU1, GELU, and with RESIDUAL the aligned add, RQ2, RELU2 (docs/isa.md §3.3); the low
// act_bits bits of the result are what DDR receives.
template <class CONFIG_T>
typename accel_types<CONFIG_T>::act_raw_t post_process(
    typename accel_types<CONFIG_T>::acc_t acc, typename accel_types<CONFIG_T>::act_raw_t residual_raw, const post_ops& ops) {
    #pragma HLS INLINE
    typedef accel_types<CONFIG_T> T;
    requant_value_t y = requantize_rt<CONFIG_T>(acc, ops.rq1);
    if (ops.relu1 && y < 0) y = 0;
    if (ops.gelu) y = gelu_post<CONFIG_T>(y);
    if (ops.residual) {
        const typename T::acc_t r = extend<typename T::x_t, CONFIG_T::act_bits>(residual_raw, ops.r_unsigned);
        const typename T::acc_t sum =
            shift_into_acc<CONFIG_T>(typename T::acc_t(y), ops.y_shift) + shift_into_acc<CONFIG_T>(r, ops.r_shift);
        y = requantize_rt<CONFIG_T>(sum, ops.rq2);
        if (ops.relu2 && y < 0) y = 0;
    }
    return typename T::act_raw_t(y.range(CONFIG_T::act_bits - 1, 0));
}

// One activation row against the `tiles` output tiles of the current weight chunk.
//
// Step s works on output tile t = s / depth and reduction tile kt = s % depth: lanes_out sums
// of lanes_in products each, added to the accumulators (loaded with the bias at kt = 0). At the
// last kt the accumulators go through the post-processing lanes into out_row. With BYPASS the
// array is skipped (depth 1): the accumulators take x itself, stored lanes_out to an x row, so
// output tile first_tile + t reads bank row first_tile + t.
template <class CONFIG_T>
void compute_row(
    typename accel_types<CONFIG_T>::x_t x_bank[2][CONFIG_T::x_rows][accel_types<CONFIG_T>::x_lanes], unsigned x_sel,
    typename accel_types<CONFIG_T>::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out],
    typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements], unsigned w_sel,
    typename accel_types<CONFIG_T>::act_raw_t res_row[2][accel_types<CONFIG_T>::row_elements],
    typename accel_types<CONFIG_T>::act_raw_t out_row[2][accel_types<CONFIG_T>::row_elements], unsigned row_sel,
    unsigned first_tile, unsigned tiles, unsigned k_tiles, bool bypass, bool use_bias, const post_ops& ops) {
    typedef accel_types<CONFIG_T> T;
    typename T::acc_t acc[CONFIG_T::lanes_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete

    static const unsigned max_steps = CONFIG_T::weight_tiles;
    const unsigned depth = bypass ? 1 : k_tiles;
    unsigned kt = 0, tile = 0;
ArraySteps:
    for (unsigned step = 0; step < tiles * depth; step++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_steps
    OutputLanes:
        for (unsigned o = 0; o < CONFIG_T::lanes_out; o++) {
            #pragma HLS UNROLL
            typename T::acc_t sum;
            if (bypass) {
                sum = x_bank[x_sel][first_tile + tile][o];
            } else {
                if (kt != 0) sum = acc[o];
                else if (use_bias) sum = typename T::acc_t(ap_int<CONFIG_T::bias_bits>(bias_bank[w_sel][tile * CONFIG_T::lanes_out + o]));
                else sum = 0;
            InputLanes:
                for (unsigned i = 0; i < CONFIG_T::lanes_in; i++) {
                    #pragma HLS UNROLL
                    sum += x_bank[x_sel][kt][i] * w_bank[w_sel][tile * k_tiles + kt][i][o];
                }
            }
            acc[o] = sum;
            if (kt == depth - 1) {
                const unsigned column = tile * CONFIG_T::lanes_out + o;
                out_row[row_sel][column] = post_process<CONFIG_T>(sum, res_row[row_sel][column], ops);
            }
        }
        if (++kt == depth) {
            kt = 0;
            tile++;
        }
    }
}

} // namespace hwgen

#endif
