// SPDX-License-Identifier: Apache-2.0
//
// Single-pass softmax.  softmax_stats streams a row once, keeping a running max m and a running
// sum l that is rescaled by e(m − m') whenever the max grows, and returns the row's statistics
// (max, 1/sum) — the interface an attention datapath uses to fuse the normalization into A·V.
// softmax_normalize turns an element and its row's statistics into p = e2(x − max)·(1/sum).
// Step for step hwgen.golden.nonlinear.softmax_stats / softmax_normalize and the Amaranth
// SoftmaxStats / SoftmaxNormalize units.  CONFIG_T (hwgen.hls.nonlinear.softmax_config) names
// the exp and reciprocal configs it builds on.
#ifndef HWGEN_SOFTMAX_H_
#define HWGEN_SOFTMAX_H_

#include <ap_fixed.h>

#include "exp.h"
#include "fixed_raw.h"
#include "reciprocal.h"

namespace hwgen {

// (max, 1/sum) of the row x[0..n), in stream order.
template <class CONFIG_T>
void softmax_stats(const typename CONFIG_T::in_t x[], int n, typename CONFIG_T::in_t& row_max,
                   typename CONFIG_T::inv_t& inv_sum) {
    typedef typename CONFIG_T::stats_exp stats_exp;
    typedef typename CONFIG_T::diff_t diff_t;
    ap_int<CONFIG_T::in_width> running_max = raw_of(x[0]);
    ap_uint<CONFIG_T::sum_width> running_sum = raw_of(exp_lane<stats_exp>(diff_t(0)));
SoftmaxStats:
    for (int k = 1; k < n; k++) {
        #pragma HLS PIPELINE II=1
        const ap_int<CONFIG_T::in_width> value = raw_of(x[k]);
        const ap_int<CONFIG_T::in_width> new_max = value > running_max ? value : running_max;
        const ap_int<CONFIG_T::in_width + 1> to_old = ap_int<CONFIG_T::in_width + 1>(running_max) - new_max;
        const ap_int<CONFIG_T::in_width + 1> to_new = ap_int<CONFIG_T::in_width + 1>(value) - new_max;
        const ap_uint<CONFIG_T::exp_width> scale = raw_of(exp_lane<stats_exp>(from_raw<diff_t>(to_old)));
        const ap_uint<CONFIG_T::exp_width> term = raw_of(exp_lane<stats_exp>(from_raw<diff_t>(to_new)));
        // The sum is rescaled when the max grows (scale = 1.0 exactly otherwise).
        running_sum = ap_uint<CONFIG_T::sum_width>((running_sum * scale) >> CONFIG_T::sum_frac_bits) + term;
        running_max = new_max;
    }
    row_max = from_raw<typename CONFIG_T::in_t>(running_max);
    inv_sum = reciprocal_lane<typename CONFIG_T::recip>(from_raw<typename CONFIG_T::sum_t>(running_sum));
}

// p = e2(x − max)·inv_sum, assigned to out_t.
template <class CONFIG_T>
typename CONFIG_T::out_t softmax_normalize(const typename CONFIG_T::in_t& x, const typename CONFIG_T::in_t& row_max,
                                           const typename CONFIG_T::inv_t& inv_sum) {
    #pragma HLS INLINE
    const ap_int<CONFIG_T::in_width + 1> difference = ap_int<CONFIG_T::in_width + 1>(raw_of(x)) - raw_of(row_max);
    const typename CONFIG_T::norm_exp::out_t e2 = exp_lane<typename CONFIG_T::norm_exp>(from_raw<typename CONFIG_T::diff_t>(difference));
    typename CONFIG_T::out_t p;
    p = e2 * inv_sum;  // exact product, then the ap_fixed assignment
    return p;
}

// Softmax of the row in[0..n) into out[0..n).
template <class CONFIG_T>
void softmax(const typename CONFIG_T::in_t in[], typename CONFIG_T::out_t out[], int n) {
    typename CONFIG_T::in_t row_max;
    typename CONFIG_T::inv_t inv_sum;
    softmax_stats<CONFIG_T>(in, n, row_max, inv_sum);
SoftmaxNormalize:
    for (int k = 0; k < n; k++) {
        #pragma HLS PIPELINE II=1
        out[k] = softmax_normalize<CONFIG_T>(in[k], row_max, inv_sum);
    }
}

} // namespace hwgen

#endif
