// SPDX-License-Identifier: Apache-2.0
//
// Runtime requantizer: docs/isa.md §3.5 as integer logic.
//
// The accelerator reads the destination format from a 32-bit word of each descriptor, so the
// rounding and overflow modes are runtime values and ap_fixed assignment (compile-time modes)
// cannot be used. These steps reproduce that assignment exactly for a two's-complement source of
// CONFIG_T::acc_bits bits; hwgen.qfx.QFmt.cast is the reference the tests compare against.
#ifndef HWGEN_REQUANTIZE_RT_H_
#define HWGEN_REQUANTIZE_RT_H_

#include <ap_int.h>

#include "hwgen_isa.h"

namespace hwgen {

// Field codes of the requantization word (docs/isa.md §3.5).
enum rounding_code {
    ROUND_TRN = 0,
    ROUND_TRN_ZERO = 1,
    ROUND_RND = 2,
    ROUND_RND_ZERO = 3,
    ROUND_RND_INF = 4,
    ROUND_RND_MIN_INF = 5,
    ROUND_RND_CONV = 6,
};
enum overflow_code {
    OVERFLOW_WRAP = 0,
    OVERFLOW_SAT = 1,
    OVERFLOW_SAT_ZERO = 2,
    OVERFLOW_SAT_SYM = 3,
    OVERFLOW_WRAP_SM = 4,
};

// Destination widths go up to 32 bits, signed or unsigned: 34 bits hold any result.
typedef ap_int<34> requant_value_t;

struct requant_word {
    ap_int<8> shift;       // source fraction bits minus destination fraction bits
    ap_uint<6> width;      // destination width W, 1..32
    bool is_signed;        // destination is signed
    ap_uint<3> rounding;   // rounding_code
    ap_uint<3> overflow;   // overflow_code
    ap_uint<6> src_width;  // golden source width, read only by WRAP_SM
};

// The word's fields at the positions of hwgen_isa.h (decode_requant_fields, generated from the ISA).
inline requant_word decode_requant(ap_uint<32> word) {
    #pragma HLS INLINE
    const requant_fields f = decode_requant_fields(word.to_uint());
    requant_word rq;
    rq.shift = f.shift;
    rq.width = f.width;
    rq.is_signed = f.is_signed;
    rq.rounding = f.round;
    rq.overflow = f.overflow;
    rq.src_width = f.src_width;
    return rq;
}

// True when every field holds a defined value (the controller refuses the descriptor otherwise).
inline bool requant_word_valid(ap_uint<32> word) {
    #pragma HLS INLINE
    const requant_fields f = decode_requant_fields(word.to_uint());
    return f.width >= 1 && f.width <= 32 && f.round <= ROUND_RND_CONV && f.overflow <= OVERFLOW_WRAP_SM &&
           f.reserved15 == 0 && f.reserved19 == 0 && f.reserved23 == 0 && f.reserved30 == 0;
}

// requantize(v, rq) of docs/isa.md §3.5 for an acc_bits-bit source.
template <class CONFIG_T>
requant_value_t requantize_rt(ap_int<CONFIG_T::acc_bits> v, const requant_word& rq) {
    #pragma HLS INLINE
    static const int ACC = CONFIG_T::acc_bits;
    // q' after a left shift by up to 34 places (enough to leave every 32-bit range), or after a
    // right shift plus the rounding increment.
    typedef ap_int<ACC + 36> wide_t;
    const int shift = rq.shift.to_int();
    const bool negative = v[ACC - 1];

    // 1. Cut at the destination LSB. Bits above the source's top bit are copies of its sign.
    wide_t q;
    bool half = false, sticky = false;
    if (shift > 0) {
        q = wide_t(v) >> (shift < ACC ? shift : ACC);
        half = v[shift - 1 < ACC - 1 ? shift - 1 : ACC - 1];
        const int below = shift - 1 < ACC ? shift - 1 : ACC;  // bits under the half bit
        if (below > 0) sticky = (ap_uint<ACC>(v) << (ACC - below)) != 0;
    } else {
        // A non-zero source shifted 34 places has its low 32 bits clear and lies outside every
        // destination range, exactly as the true (wider) shift would.
        q = wide_t(v) << (-shift < 34 ? -shift : 34);
    }

    // 2. Round.
    bool increment;
    switch (rq.rounding.to_uint()) {
    case ROUND_TRN_ZERO: increment = negative && (half || sticky); break;
    case ROUND_RND: increment = half; break;
    case ROUND_RND_ZERO: increment = half && (negative || sticky); break;
    case ROUND_RND_INF: increment = half && (!negative || sticky); break;
    case ROUND_RND_MIN_INF: increment = half && sticky; break;
    case ROUND_RND_CONV: increment = half && (q[0] || sticky); break;
    default: increment = false; break;  // TRN
    }
    q += increment;

    // 3. Overflow into W bits.
    const int width = rq.width.to_int();
    const wide_t one = 1;
    const wide_t hi = rq.is_signed ? wide_t((one << (width - 1)) - 1) : wide_t((one << width) - 1);
    const wide_t lo = rq.is_signed ? wide_t(-(one << (width - 1))) : wide_t(0);
    const ap_uint<32> low_bits = ap_uint<32>(q.range(31, 0)) & ap_uint<32>((ap_uint<33>(1) << width) - 1);
    requant_value_t wrap = low_bits;
    if (rq.is_signed && low_bits[width - 1]) wrap -= requant_value_t(1) << width;
    const bool too_big = q > hi, too_small = q < lo;

    switch (rq.overflow.to_uint()) {
    case OVERFLOW_SAT:
        return too_big ? requant_value_t(hi) : too_small ? requant_value_t(lo) : wrap;
    case OVERFLOW_SAT_ZERO:
        return too_big || too_small ? requant_value_t(0) : wrap;
    case OVERFLOW_SAT_SYM:
        if (!rq.is_signed) return too_big ? requant_value_t(hi) : too_small ? requant_value_t(lo) : wrap;
        // The most negative code itself becomes -hi (ap_fixed's symmetric range), except at W = 1.
        if (too_big) return requant_value_t(hi);
        if (q <= lo) return width > 1 ? requant_value_t(-hi) : requant_value_t(lo);
        return wrap;
    case OVERFLOW_WRAP_SM: {
        if (!rq.is_signed) return wrap;  // undefined for unsigned destinations (qfx refuses them)
        const int position = shift + width;
        const bool above = position >= 0 && position < rq.src_width.to_int() && v[position < ACC ? position : ACC - 1];
        const bool invert = (too_big || too_small) && above != (wrap < 0);
        return invert ? requant_value_t(~wrap) : wrap;
    }
    default:
        return wrap;  // WRAP
    }
}

} // namespace hwgen

#endif
