// SPDX-License-Identifier: Apache-2.0
//
// The unified compute unit as two components (DESIGN.md §3.1): the MAC array (`mac_array`, a
// lanes_in x lanes_out array with acc_bits accumulators, as in Edge-MoE's linear unit:
// output-stationary, one lanes_in x lanes_out tile per cycle, the (output tile, reduction step)
// loops flattened into one II=1 pipeline) and the post-processing lanes (`post_lanes`: bias,
// requantize, ReLU, GELU, residual add, requantize, ReLU). They meet at a stream of accumulator
// vectors, one per output tile, so every engine that drives the array (LINEAR, attention; convolution
// next) consumes its results the same way (the attention engine's Q·Kᵀ through the SCALED lanes:
// a scale multiplier before the first requantizer).
#ifndef HWGEN_COMPUTE_UNIT_H_
#define HWGEN_COMPUTE_UNIT_H_

#include <ap_int.h>
#include <hls_stream.h>

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
    // HwParams.tile_stride: bytes one lanes_in x lanes_out tile of `bytes` elements occupies in DDR.
    static const unsigned weight_tile_bytes =
        (CONFIG_T::lanes_in * CONFIG_T::lanes_out * weight_bytes + axi_bytes - 1) / axi_bytes * axi_bytes;
    static const unsigned act_tile_bytes =
        (CONFIG_T::lanes_in * CONFIG_T::lanes_out * act_bytes + axi_bytes - 1) / axi_bytes * axi_bytes;
    static const unsigned weight_tile_words = weight_tile_bytes / axi_bytes;
    // A weight-bank element holds a weight or, for B_ROWMAJOR and B_TRANSPOSED, an activation.
    static const unsigned operand_bits = CONFIG_T::act_bits > CONFIG_T::weight_bits ? CONFIG_T::act_bits : CONFIG_T::weight_bits;
    // A chunk's row segment (output, residual, BYPASS input) and its bias entries.
    static const unsigned row_elements = CONFIG_T::max_chunk_tiles * CONFIG_T::lanes_out;
    static const unsigned bias_elements = CONFIG_T::max_chunk_tiles * CONFIG_T::lanes_out;

    typedef ap_uint<CONFIG_T::axi_bits> word_t;
    typedef ap_uint<CONFIG_T::act_bits> act_raw_t;    // an activation container as stored in DDR
    typedef ap_uint<CONFIG_T::bias_bits> bias_raw_t;  // a bias container
    // Operands are sign- or zero-extended when they are loaded, so the array is signed only.
    typedef ap_int<CONFIG_T::act_bits + 1> x_t;
    typedef ap_int<operand_bits + 1> w_t;
    typedef ap_int<CONFIG_T::acc_bits> acc_t;
};

// The banks the MAC array reads, index 0/1 of the first dimension being the ping-pong halves:
// activation rows of lanes_in elements (k_tiles <= x_bank_rows rows) and weight tiles (a chunk).
template <class CONFIG_T>
struct array_banks {
    typedef typename accel_types<CONFIG_T>::x_t x_bank_t[2][CONFIG_T::x_bank_rows][CONFIG_T::lanes_in];
    typedef typename accel_types<CONFIG_T>::w_t w_bank_t[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out];
};

// What the MAC array hands on per output tile: lanes_out exact sums (modulo 2^acc_bits).
template <class CONFIG_T>
struct acc_vector {
    typename accel_types<CONFIG_T>::acc_t lane[CONFIG_T::lanes_out];
};

// The post-processing of one LINEAR descriptor (or of an attention product), decoded once per descriptor.
struct post_ops {
    ap_uint<16> scale;  // SCALED lanes only (QK_SOFTMAX_STATS): RQ1 reads acc·scale
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

// The exact product of two signed integers, a·b in W1 + W2 bits. C-simulation only: the ap_int model
// multiplies `a * b` as two operands already widened to W1 + W2 bits, whose product type is over
// 64 bits, so every product took a multi-word multiply and a malloc (60 % of a deit-tiny C-sim);
// widening one operand and multiplying in place is one native multiply of the same exact value.
// Synthesis sees the plain `a * b`, a W1 x W2 multiplier.
template <int W1, int W2>
ap_int<W1 + W2> exact_product(const ap_int<W1>& a, const ap_int<W2>& b) {
    #pragma HLS INLINE
#ifndef __SYNTHESIS__
    if (W1 + W2 <= 64) {
        ap_int<W1 + W2> p = a;
        p *= b;
        return p;
    }
#endif
    return a * b;
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

// The source of the SCALED lanes' RQ1: acc·scale, exact in acc_bits + 16 bits (scale is 16-bit unsigned).
template <class CONFIG_T>
struct scaled_source {
    static const unsigned acc_bits = CONFIG_T::acc_bits + 16;
};

// RQ1, RELU1, GELU, and with RESIDUAL the aligned add, RQ2, RELU2 (docs/isa.md §3.3); the low
// act_bits bits of the result are what DDR receives. SCALED (the attention engine's Q·Kᵀ,
// docs/isa.md §3.8): RQ1 of acc·ops.scale, the only step its descriptor asks for.
template <class CONFIG_T, bool SCALED>
typename accel_types<CONFIG_T>::act_raw_t post_process(
    typename accel_types<CONFIG_T>::acc_t acc, typename accel_types<CONFIG_T>::act_raw_t residual_raw, const post_ops& ops) {
    #pragma HLS INLINE
    typedef accel_types<CONFIG_T> T;
    requant_value_t y = SCALED ? requantize_rt<scaled_source<CONFIG_T> >(acc * ops.scale, ops.rq1)
                               : requantize_rt<CONFIG_T>(acc, ops.rq1);
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

// The MAC array: `tiles` output tiles of one activation row, each the sum over k_tiles reduction
// steps. Step s works on output tile t = s / k_tiles (weight tile t·k_tiles + kt of the chunk in
// bank w_sel) and reduction tile kt = s % k_tiles (x bank row kt): lanes_out sums of lanes_in
// products each, into the accumulators (cleared at kt = 0). After the last kt the accumulators
// leave as one acc_vector. Lanes of x beyond K hold 0, so padding weights add nothing.
template <class CONFIG_T>
void mac_array(typename array_banks<CONFIG_T>::x_bank_t x_bank, unsigned x_sel,
               typename array_banks<CONFIG_T>::w_bank_t w_bank, unsigned w_sel, unsigned tiles, unsigned k_tiles,
               hls::stream<acc_vector<CONFIG_T> >& out) {
    typedef accel_types<CONFIG_T> T;
    typename T::acc_t acc[CONFIG_T::lanes_out];
    // Registers, not a memory: every lane updates its accumulator in the same cycle.
    #pragma HLS ARRAY_PARTITION variable=acc complete

    static const unsigned max_steps = CONFIG_T::weight_tiles;
    unsigned kt = 0, tile = 0;
ArraySteps:
    for (unsigned step = 0; step < tiles * k_tiles; step++) {
        // One tile per cycle: the banks are partitioned so a whole tile and x row are read at once.
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_steps
        acc_vector<CONFIG_T> v;
    OutputLanes:
        for (unsigned o = 0; o < CONFIG_T::lanes_out; o++) {
            #pragma HLS UNROLL
            typename T::acc_t sum = kt == 0 ? typename T::acc_t(0) : acc[o];
        InputLanes:
            for (unsigned i = 0; i < CONFIG_T::lanes_in; i++) {
                #pragma HLS UNROLL
                sum += exact_product(x_bank[x_sel][kt][i], w_bank[w_sel][tile * k_tiles + kt][i][o]);
            }
            acc[o] = sum;
            v.lane[o] = sum;
        }
        if (kt == k_tiles - 1) out.write(v);
        if (++kt == k_tiles) {
            kt = 0;
            tile++;
        }
    }
}

// BYPASS feeds the post-processing lanes without the array: acc[n] = x[n] (the row segment in
// x_row, sign- or zero-extended), one output tile per step like the array's last reduction step.
template <class CONFIG_T>
void bypass_array(typename accel_types<CONFIG_T>::act_raw_t x_row[2][accel_types<CONFIG_T>::row_elements], unsigned sel,
                  unsigned tiles, bool is_unsigned, hls::stream<acc_vector<CONFIG_T> >& out) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned max_tiles = CONFIG_T::max_chunk_tiles;
BypassSteps:
    for (unsigned tile = 0; tile < tiles; tile++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_tiles
        acc_vector<CONFIG_T> v;
        for (unsigned o = 0; o < CONFIG_T::lanes_out; o++) {
            #pragma HLS UNROLL
            v.lane[o] = extend<typename T::x_t, CONFIG_T::act_bits>(x_row[sel][tile * CONFIG_T::lanes_out + o], is_unsigned);
        }
        out.write(v);
    }
}

// The post-processing lanes: per output tile, lanes_out lanes of bias (BIAS: added modulo
// 2^acc_bits, as the accumulator would have), RQ1, RELU1, GELU and with RESIDUAL the aligned add,
// RQ2, RELU2 (docs/isa.md §3.3), into the chunk's output row segment (SCALED: see post_process).
template <class CONFIG_T, bool SCALED = false>
void post_lanes(hls::stream<acc_vector<CONFIG_T> >& in,
                typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements], unsigned w_sel,
                bool use_bias, typename accel_types<CONFIG_T>::act_raw_t res_row[2][accel_types<CONFIG_T>::row_elements],
                typename accel_types<CONFIG_T>::act_raw_t out_row[2][accel_types<CONFIG_T>::row_elements], unsigned sel,
                unsigned tiles, const post_ops& ops) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned max_tiles = CONFIG_T::max_chunk_tiles;
PostTiles:
    for (unsigned tile = 0; tile < tiles; tile++) {
        // One output tile per cycle, the array's peak rate (k_tiles = 1).
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_tiles
        const acc_vector<CONFIG_T> v = in.read();
    PostLanes:
        for (unsigned o = 0; o < CONFIG_T::lanes_out; o++) {
            #pragma HLS UNROLL
            const unsigned column = tile * CONFIG_T::lanes_out + o;
            typename T::acc_t sum = v.lane[o];
            if (use_bias) sum += typename T::acc_t(ap_int<CONFIG_T::bias_bits>(bias_bank[w_sel][column]));
            out_row[sel][column] = post_process<CONFIG_T, SCALED>(sum, res_row[sel][column], ops);
        }
    }
}

} // namespace hwgen

#endif
