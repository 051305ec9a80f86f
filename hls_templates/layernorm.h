// SPDX-License-Identifier: Apache-2.0
//
// LayerNorm from one pass of exact integer sums: S1 = Σx, S2 = Σx² (raw codes), then
// D = n·S2 − S1² + n²·eps_raw and U = n·x − S1, so that (x − μ)/√(var + ε) = U/√D with no
// division by n.  1/√D comes from the rsqrt scheme of rsqrt.h as a mantissa and an exponent;
// U·rsqrt(D) is rounded once into norm_t (ties up, saturating), and out = norm·γ + β is an
// exact ap_fixed expression assigned to out_t.  Step for step hwgen.golden.nonlinear.layernorm
// and the Amaranth LayerNorm unit, LANES elements per beat.
#ifndef HWGEN_LAYERNORM_H_
#define HWGEN_LAYERNORM_H_

#include <ap_fixed.h>

#include "fixed_raw.h"
#include "rsqrt.h"

namespace hwgen {

// LayerNorm of the row x[0..n) with per-channel gamma, beta into out[0..n), with D's ε term given
// at run time: d_offset = n²·eps_raw (< n²·2^2F). The accelerator's LAYERNORM descriptors carry it,
// so one unit serves every ε. LANES elements per beat (the RTL unit's lanes: one AXI word): both
// loops run over beats, the lanes of a beat unrolled, the last beat's lanes past n masked out.
// The sums are exact, so LANES changes no bit of the result. Per row, the rsqrt mantissa r is
// multiplied by n and by S1 once, so that a lane forms U·r as x·(n·r) − S1·r: the same integer,
// with one narrow multiply per element (the RTL's LayerNormApply does the same).
template <class CONFIG_T, unsigned LANES = 1>
void layernorm(const typename CONFIG_T::in_t x[], const typename CONFIG_T::gamma_t gamma[],
               const typename CONFIG_T::beta_t beta[], typename CONFIG_T::out_t out[], int n,
               const ap_uint<CONFIG_T::d_bits>& d_offset) {
    const int P = CONFIG_T::work_bits;
    const int beats = (n + int(LANES) - 1) / int(LANES);
    static const int max_beats = (CONFIG_T::max_channels + LANES - 1) / LANES;
    ap_int<CONFIG_T::sum_bits> s1 = 0;
    ap_uint<CONFIG_T::square_sum_bits> s2 = 0;
LayerNormSums:
    for (int beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        ap_int<CONFIG_T::sum_bits> beat_s1 = 0;
        ap_uint<CONFIG_T::square_sum_bits> beat_s2 = 0;
        for (unsigned lane = 0; lane < LANES; lane++) {
            #pragma HLS UNROLL
            const int k = beat * int(LANES) + int(lane);
            const ap_int<CONFIG_T::in_width> raw = k < n ? ap_int<CONFIG_T::in_width>(raw_of(x[k])) : ap_int<CONFIG_T::in_width>(0);
            beat_s1 += raw;
            beat_s2 += ap_uint<2 * CONFIG_T::in_width>(raw * raw);
        }
        s1 += beat_s1;
        s2 += beat_s2;
    }
    const ap_int<CONFIG_T::count_bits + 1> count = n;
    const ap_int<CONFIG_T::d_bits + 2> d = ap_int<CONFIG_T::d_bits + 2>(count * s2) - s1 * s1 + d_offset;
    const bool zero = d == 0;
    const ap_uint<CONFIG_T::d_bits> magnitude = zero ? ap_int<CONFIG_T::d_bits + 2>(1) : d;
    ap_uint<P + 2> rstd;
    int half;
    rsqrt_mantissa<typename CONFIG_T::rsqrt, CONFIG_T::d_bits>(magnitude, 0, rstd, half);
    const int shift = P + half - CONFIG_T::norm_frac_bits;  // >= 1: D >= 1
    const ap_uint<CONFIG_T::count_bits + P + 2> scale = ap_uint<CONFIG_T::count_bits>(n) * rstd;  // n·r
    const ap_int<CONFIG_T::sum_bits + P + 2> offset = s1 * rstd;                                  // S1·r
LayerNormApply:
    for (int beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        for (unsigned lane = 0; lane < LANES; lane++) {
            #pragma HLS UNROLL
            const int k = beat * int(LANES) + int(lane);
            if (k >= n) continue;
            // U·r = (n·x − S1)·r, exactly.
            const ap_int<CONFIG_T::u_bits + P + 3> product = raw_of(x[k]) * scale - offset;
            ap_int<CONFIG_T::u_bits + P + 3> rounded = (product + (ap_int<CONFIG_T::u_bits + P + 3>(1) << (shift - 1))) >> shift;
            if (rounded > CONFIG_T::norm_max_raw) rounded = CONFIG_T::norm_max_raw;
            if (rounded < CONFIG_T::norm_min_raw) rounded = CONFIG_T::norm_min_raw;
            if (zero) rounded = 0;
            const typename CONFIG_T::norm_t norm = from_raw<typename CONFIG_T::norm_t>(rounded);
            out[k] = norm * gamma[k] + beta[k];  // exact, then the ap_fixed assignment
        }
    }
}

// LayerNorm of the row x[0..n) with the config's ε: d_offset = n²·eps_raw.
template <class CONFIG_T, unsigned LANES = 1>
void layernorm(const typename CONFIG_T::in_t x[], const typename CONFIG_T::gamma_t gamma[],
               const typename CONFIG_T::beta_t beta[], typename CONFIG_T::out_t out[], int n) {
    const ap_int<CONFIG_T::count_bits + 1> count = n;
    const ap_uint<CONFIG_T::d_bits> d_offset = ap_int<CONFIG_T::d_bits + 2>(count * count) * CONFIG_T::eps_raw;
    layernorm<CONFIG_T, LANES>(x, gamma, beta, out, n, d_offset);
}

} // namespace hwgen

#endif
