// SPDX-License-Identifier: Apache-2.0
//
// Requantizer: converts `lanes` fixed-point values from CONFIG_T::in_t to CONFIG_T::out_t.
//
// The conversion is plain ap_fixed assignment, whose rounding and overflow rules are the QFX
// contract: hwgen.qfx reproduces them bit for bit, and the Amaranth Requantizer transcribes the same
// steps into gates, so all three agree on every input.
#ifndef HWGEN_REQUANTIZE_H_
#define HWGEN_REQUANTIZE_H_

#include <ap_fixed.h>

namespace hwgen {

// Defaults a generated config overrides (`struct my_config : hwgen::requantize_config {...}`).
struct requantize_config {
    static const unsigned lanes = 1;
    typedef ap_fixed<32, 12> in_t;
    typedef ap_fixed<16, 6, AP_RND_CONV, AP_SAT> out_t;
};

template <class CONFIG_T>
void requantize(const typename CONFIG_T::in_t in[CONFIG_T::lanes], typename CONFIG_T::out_t out[CONFIG_T::lanes]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=in complete
    #pragma HLS ARRAY_PARTITION variable=out complete
RequantizeLanes:
    for (unsigned lane = 0; lane < CONFIG_T::lanes; lane++) {
        #pragma HLS UNROLL
        out[lane] = in[lane];
    }
}

} // namespace hwgen

#endif
