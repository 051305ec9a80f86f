// SPDX-License-Identifier: Apache-2.0
//
// The hwgen accelerator in Vitis HLS: a controller that fetches a Program from DDR and runs each
// LINEAR descriptor on the unified compute unit, with ping-pong weight and activation banks, and
// each LAYERNORM or SOFTMAX descriptor on its row unit (layernorm.h, softmax.h).
//
// docs/isa.md is the contract: the header check, every descriptor field and flag, the weight chunks
// and loop order of §3.4, the requantization of §3.5 and the row descriptors of §3.6. hwgen.compiler.isa_sim executes the same
// Program on the same memory image, and the C-simulation tests compare the two byte for byte.
#ifndef HWGEN_ACCELERATOR_H_
#define HWGEN_ACCELERATOR_H_

#include <ap_int.h>
#include <stdint.h>

#include "compute_unit.h"
#include "hwgen_isa.h"
#include "fixed_raw.h"
#include "layernorm.h"
#include "requantize_rt.h"
#include "softmax.h"

namespace hwgen {

// Opcodes, flags, status codes, sizes and field positions: the generated hwgen_isa.h (hwgen.isa).
using namespace isa;
typedef isa::status status_code;

// Defaults a generated config overrides (`struct hwgen_accel_config : hwgen::accelerator_config`);
// hwgen.hls.accelerator derives every value from one HwParams.
struct accelerator_config {
    static const unsigned lanes_in = 16;
    static const unsigned lanes_out = 16;
    static const unsigned acc_bits = 32;
    static const unsigned act_bits = 16;
    static const unsigned weight_bits = 8;
    static const unsigned bias_bits = 32;
    static const unsigned axi_bits = 128;
    // One bank of each buffer (there are two): activation rows of max(lanes_in, lanes_out)
    // elements, weight tiles (and as many output tiles of bias), and the residual/output row
    // segment of one chunk, in output tiles.
    static const unsigned x_rows = 128;
    static const unsigned weight_tiles = 256;
    static const unsigned row_tiles = 256;
    // AXI words one weight tile occupies in DDR: tile_stride(weight_bytes) / axi_bytes.
    static const unsigned weight_tile_words = 16;
    static const uint32_t fingerprint = 0;
    // Row units: longest row (hwgen.units.ROW_MAX) and which units exist. A generated config that
    // has one names its config struct (`typedef ... layernorm;`, `typedef ... softmax;`) and, for
    // LayerNorm, the fraction bits F of its input format (d_offset < N²·2^2F). Every config names
    // its GELU lanes' struct (`typedef ... gelu;`).
    static const unsigned row_max = 1024;
    static const bool has_layernorm = false;
    static const bool has_softmax = false;
    static const unsigned layernorm_frac_bits = 0;
};

// A LINEAR descriptor's fields (docs/isa.md §3.3).
struct linear_descriptor {
    uint32_t opcode, flags, m, k, n, k_tiles, n_tiles;
    uint32_t x_addr, w_addr, bias_addr, res_addr, out_addr;
    uint32_t x_stride, w_stride, res_stride, out_stride;
    uint32_t rq1, rq2, chunk_tiles, y_shift, r_shift;
};

inline linear_descriptor decode_linear(const uint32_t w[16]) {
    linear_descriptor d;
    d.opcode = w[0] & 0xFF;
    d.flags = w[0] >> 8;
    d.m = w[1];
    d.k = w[2] & 0xFFFF;
    d.n = w[2] >> 16;
    d.k_tiles = w[3] & 0xFFFF;
    d.n_tiles = w[3] >> 16;
    d.x_addr = w[4];
    d.w_addr = w[5];
    d.bias_addr = w[6];
    d.res_addr = w[7];
    d.out_addr = w[8];
    d.x_stride = w[9];
    d.w_stride = w[10];
    d.res_stride = w[11];
    d.out_stride = w[12];
    d.rq1 = w[13];
    d.rq2 = w[14];
    d.chunk_tiles = w[15] & 0xFFFF;
    d.y_shift = (w[15] >> 16) & 0xFF;
    d.r_shift = w[15] >> 24;
    return d;
}

// A LAYERNORM or SOFTMAX descriptor's fields (docs/isa.md §3.6).
struct row_descriptor {
    uint32_t opcode, m, n, x_addr, gamma_addr, beta_addr, out_addr, x_stride, out_stride;
    ap_uint<96> d_offset;
    bool reserved_clear;  // every reserved bit is 0
};

inline row_descriptor decode_rows(const uint32_t w[16]) {
    row_descriptor d;
    d.opcode = w[0] & 0xFF;
    d.m = w[1];
    d.n = w[2] & 0xFFFF;
    d.x_addr = w[4];
    d.gamma_addr = w[5];
    d.beta_addr = w[6];
    d.out_addr = w[8];
    d.x_stride = w[9];
    d.out_stride = w[12];
    d.d_offset = (ap_uint<96>(w[15]) << 64) | (ap_uint<96>(w[14]) << 32) | ap_uint<96>(w[13]);
    d.reserved_clear = (w[0] >> 8) == 0 && (w[2] >> 16) == 0 && w[3] == 0 && w[7] == 0 && w[10] == 0 && w[11] == 0;
    return d;
}

// ------------------------------------------------------------------------------------ DDR access
// Every address is a byte offset from `mem` (the image base). Buffers start on AXI words; a row
// segment of a later chunk may start inside one, so the readers and the writer handle a first
// partial word. Containers never straddle words (they are 1, 2, 4 or 8 bytes, naturally aligned).

// The 16 little-endian words of the 64-byte block at `addr` (a multiple of the AXI word).
template <class CONFIG_T>
void fetch_block(const typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, uint32_t words[16]) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned per_beat = CONFIG_T::axi_bits / 32;
FetchBeats:
    for (unsigned beat = 0; beat < DESCRIPTOR_BYTES / T::axi_bytes; beat++) {
        #pragma HLS PIPELINE II=1
        const typename T::word_t data = mem[addr / T::axi_bytes + beat];
        for (unsigned j = 0; j < per_beat; j++) {
            #pragma HLS UNROLL
            words[beat * per_beat + j] = data.range(32 * j + 31, 32 * j).to_uint();
        }
    }
}

// `count` BITS-bit containers from `addr` into dst[sel][0..count).
template <class CONFIG_T, int BITS, unsigned CAPACITY>
void read_containers(const typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count,
                     ap_uint<BITS> dst[2][CAPACITY], unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned per_word = CONFIG_T::axi_bits / BITS;
    static const unsigned max_beats = CAPACITY / per_word + 1;
    const unsigned first = (addr % T::axi_bytes) / (BITS / 8);
    const unsigned beats = (first + count + per_word - 1) / per_word;
    const typename T::word_t* src = mem + addr / T::axi_bytes;
ReadBeats:
    for (unsigned beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const typename T::word_t data = src[beat];
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const int element = int(beat * per_word + slot) - int(first);
            if (element >= 0 && element < int(count)) dst[sel][element] = data.range(BITS * slot + BITS - 1, BITS * slot);
        }
    }
}

// src[sel][0..count) as act_bits containers to `addr`. Bytes of a first or last word outside the
// segment are read back and rewritten unchanged: docs/isa.md lets a descriptor write nothing
// beyond column N, and the padding of a row or a neighbouring chunk's columns share that word.
template <class CONFIG_T>
void write_containers(typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count,
                      typename accel_types<CONFIG_T>::act_raw_t src[2][accel_types<CONFIG_T>::row_elements], unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_beats = T::row_elements / per_word + 1;
    const unsigned first = (addr % T::axi_bytes) / T::act_bytes;
    const unsigned beats = (first + count + per_word - 1) / per_word;
    const unsigned tail = (first + count) % per_word;
    typename T::word_t* dst = mem + addr / T::axi_bytes;
WriteBeats:
    for (unsigned beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const bool partial = (beat == 0 && first != 0) || (beat == beats - 1 && tail != 0);
        typename T::word_t data = partial ? dst[beat] : typename T::word_t(0);
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const int element = int(beat * per_word + slot) - int(first);
            if (element >= 0 && element < int(count)) data.range(bits * slot + bits - 1, bits * slot) = src[sel][element];
        }
        dst[beat] = data;
    }
}

// Row m of x into activation bank `sel`, `lanes` elements per bank row, zero beyond K so the
// array's unused input lanes multiply by 0.
template <class CONFIG_T, unsigned LANES>
void load_x_row(const typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count, unsigned rows,
                bool is_unsigned, typename accel_types<CONFIG_T>::x_t x_bank[2][CONFIG_T::x_rows][accel_types<CONFIG_T>::x_lanes],
                unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_beats = CONFIG_T::x_rows * LANES / per_word + 1;
    const unsigned beats = (count + per_word - 1) / per_word;
    const typename T::word_t* src = mem + addr / T::axi_bytes;
LoadXBeats:
    for (unsigned beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const typename T::word_t data = src[beat];
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const unsigned element = beat * per_word + slot;
            if (element < count) {
                const ap_uint<bits> raw = data.range(bits * slot + bits - 1, bits * slot);
                x_bank[sel][element / LANES][element % LANES] = extend<typename T::x_t, bits>(raw, is_unsigned);
            }
        }
    }
ClearXTail:
    for (unsigned element = count; element < rows * LANES; element++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=0 max=LANES
        x_bank[sel][element / LANES][element % LANES] = 0;
    }
}

// Chunk `chunk` of the weight tiles (output-tile major, docs/isa.md §3.3) into weight bank `sel`.
template <class CONFIG_T>
void load_weight_tiles(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned first_tile,
                       unsigned tiles, typename accel_types<CONFIG_T>::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out],
                       unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::weight_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned tile_elements = CONFIG_T::lanes_in * CONFIG_T::lanes_out;
    static const unsigned max_beats = CONFIG_T::weight_tiles * CONFIG_T::weight_tile_words;
    const bool is_unsigned = d.flags & FLAG_W_UNSIGNED;
    const typename T::word_t* src = mem + d.w_addr / T::axi_bytes + first_tile * d.k_tiles * CONFIG_T::weight_tile_words;
    unsigned tile = 0, word_in_tile = 0;
LoadWeightBeats:
    for (unsigned beat = 0; beat < tiles * d.k_tiles * CONFIG_T::weight_tile_words; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const typename T::word_t data = src[beat];
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const unsigned element = word_in_tile * per_word + slot;  // i * lanes_out + o; beyond: padding
            if (element < tile_elements) {
                const ap_uint<bits> raw = data.range(bits * slot + bits - 1, bits * slot);
                w_bank[sel][tile][element / CONFIG_T::lanes_out][element % CONFIG_T::lanes_out] =
                    extend<typename T::w_t, bits>(raw, is_unsigned);
            }
        }
        if (++word_in_tile == CONFIG_T::weight_tile_words) {
            word_in_tile = 0;
            tile++;
        }
    }
}

// B_ROWMAJOR: the chunk's columns of every row of B (activation containers) into weight bank
// `sel`, element (k, n) at tile (n / lanes_out, k / lanes_in), position (k % lanes_in, n % lanes_out).
template <class CONFIG_T>
void load_b_rows(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned first_tile,
                 unsigned columns, typename accel_types<CONFIG_T>::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out],
                 unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_rows = CONFIG_T::x_rows * CONFIG_T::lanes_in;
    static const unsigned max_beats = T::row_elements / per_word + 1;
    const bool is_unsigned = d.flags & FLAG_W_UNSIGNED;
LoadBRows:
    for (unsigned k = 0; k < d.k; k++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_rows
        const uint32_t addr = d.w_addr + k * d.w_stride + first_tile * CONFIG_T::lanes_out * T::act_bytes;
        const unsigned first = (addr % T::axi_bytes) / T::act_bytes;
        const unsigned beats = (first + columns + per_word - 1) / per_word;
        const typename T::word_t* src = mem + addr / T::axi_bytes;
        const unsigned kt = k / CONFIG_T::lanes_in, lane = k % CONFIG_T::lanes_in;
    LoadBBeats:
        for (unsigned beat = 0; beat < beats; beat++) {
            #pragma HLS PIPELINE II=1
            #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
            const typename T::word_t data = src[beat];
            for (unsigned slot = 0; slot < per_word; slot++) {
                #pragma HLS UNROLL
                const int column = int(beat * per_word + slot) - int(first);
                if (column >= 0 && column < int(columns)) {
                    const ap_uint<bits> raw = data.range(bits * slot + bits - 1, bits * slot);
                    const unsigned tile = unsigned(column) / CONFIG_T::lanes_out;
                    w_bank[sel][tile * d.k_tiles + kt][lane][unsigned(column) % CONFIG_T::lanes_out] =
                        extend<typename T::w_t, bits>(raw, is_unsigned);
                }
            }
        }
    }
}

// Everything chunk `chunk` needs in weight bank `sel`: its tiles (or B columns) and its bias.
template <class CONFIG_T>
void load_chunk(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned chunk,
                typename accel_types<CONFIG_T>::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out],
                typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements], unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    const unsigned first_tile = chunk * d.chunk_tiles;
    const unsigned tiles = d.n_tiles - first_tile < d.chunk_tiles ? d.n_tiles - first_tile : d.chunk_tiles;
    if (d.flags & FLAG_B_ROWMAJOR) {
        const unsigned first_column = first_tile * CONFIG_T::lanes_out;
        const unsigned columns = d.n - first_column < tiles * CONFIG_T::lanes_out ? d.n - first_column : tiles * CONFIG_T::lanes_out;
        load_b_rows<CONFIG_T>(mem, d, first_tile, columns, w_bank, sel);
    } else {
        load_weight_tiles<CONFIG_T>(mem, d, first_tile, tiles, w_bank, sel);
    }
    if (d.flags & FLAG_BIAS) {
        read_containers<CONFIG_T, CONFIG_T::bias_bits, T::bias_elements>(
            mem, d.bias_addr + first_tile * CONFIG_T::lanes_out * T::bias_bytes, tiles * CONFIG_T::lanes_out, bias_bank, sel);
    }
}

// `count` act_bits containers from `addr` into dst[0..count) as values of T (ap_fixed), whose
// codes they are.
template <class CONFIG_T, class T, unsigned CAPACITY>
void read_row(const typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count, T dst[CAPACITY]) {
    typedef accel_types<CONFIG_T> T_;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_beats = CAPACITY / per_word + 1;
    const unsigned first = (addr % T_::axi_bytes) / T_::act_bytes;
    const unsigned beats = (first + count + per_word - 1) / per_word;
    const typename T_::word_t* src = mem + addr / T_::axi_bytes;
ReadRowBeats:
    for (unsigned beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const typename T_::word_t data = src[beat];
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const int element = int(beat * per_word + slot) - int(first);
            if (element >= 0 && element < int(count)) {
                const ap_uint<bits> raw = data.range(bits * slot + bits - 1, bits * slot);
                dst[element] = from_raw<T>(raw);
            }
        }
    }
}

// The codes of src[0..count) (ap_fixed values of act_bits) as containers to `addr`, with the
// partial-word rule of write_containers: bytes outside the row are rewritten unchanged.
template <class CONFIG_T, class T, unsigned CAPACITY>
void write_row(typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count, const T src[CAPACITY]) {
    typedef accel_types<CONFIG_T> T_;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_beats = CAPACITY / per_word + 1;
    const unsigned first = (addr % T_::axi_bytes) / T_::act_bytes;
    const unsigned beats = (first + count + per_word - 1) / per_word;
    const unsigned tail = (first + count) % per_word;
    typename T_::word_t* dst = mem + addr / T_::axi_bytes;
WriteRowBeats:
    for (unsigned beat = 0; beat < beats; beat++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
        const bool partial = (beat == 0 && first != 0) || (beat == beats - 1 && tail != 0);
        typename T_::word_t data = partial ? dst[beat] : typename T_::word_t(0);
        for (unsigned slot = 0; slot < per_word; slot++) {
            #pragma HLS UNROLL
            const int element = int(beat * per_word + slot) - int(first);
            if (element >= 0 && element < int(count)) data.range(bits * slot + bits - 1, bits * slot) = ap_uint<bits>(raw_of(src[element]));
        }
        dst[beat] = data;
    }
}

// ----------------------------------------------------------------------------------- validation

// Ends (exclusive) of rows × columns containers of `bytes` each, `stride` apart, from `addr`.
inline uint64_t rows_end(uint32_t addr, uint32_t rows, uint32_t stride, uint32_t columns, unsigned bytes) {
    return uint64_t(addr) + uint64_t(rows - 1) * stride + uint64_t(columns) * bytes;
}

// STATUS_OK, or why the controller must refuse descriptor `d` before touching DDR.
template <class CONFIG_T>
status_code check_linear(const linear_descriptor& d, uint32_t image_bytes) {
    typedef accel_types<CONFIG_T> T;
    const bool bypass = d.flags & FLAG_BYPASS, b_rows = d.flags & FLAG_B_ROWMAJOR;
    const bool bias = (d.flags & FLAG_BIAS) && !bypass, residual = d.flags & FLAG_RESIDUAL;
    if (d.opcode != OPCODE_LINEAR) return STATUS_BAD_OPCODE;
    if ((d.flags & ~uint32_t(FLAGS_DEFINED)) || (d.flags & FLAG_B_TRANSPOSED) || d.m == 0 || d.k == 0 || d.n == 0) return STATUS_BAD_DESCRIPTOR;
    if (d.k_tiles != (d.k + CONFIG_T::lanes_in - 1) / CONFIG_T::lanes_in) return STATUS_BAD_DESCRIPTOR;
    if (d.n_tiles != (d.n + CONFIG_T::lanes_out - 1) / CONFIG_T::lanes_out) return STATUS_BAD_DESCRIPTOR;
    if (d.chunk_tiles == 0 || d.chunk_tiles > d.n_tiles || (bypass && d.k != d.n)) return STATUS_BAD_DESCRIPTOR;
    if (!requant_word_valid(d.rq1) || (residual && !requant_word_valid(d.rq2))) return STATUS_BAD_DESCRIPTOR;

    const unsigned x_rows_needed = bypass ? d.n_tiles : d.k_tiles;
    if (x_rows_needed > CONFIG_T::x_rows || d.chunk_tiles > CONFIG_T::row_tiles) return STATUS_DOES_NOT_FIT;
    if (!bypass && uint64_t(d.chunk_tiles) * d.k_tiles > CONFIG_T::weight_tiles) return STATUS_DOES_NOT_FIT;

    const uint32_t a = T::axi_bytes;
    if (d.x_addr % a || d.x_stride % a || d.out_addr % a || d.out_stride % a) return STATUS_MISALIGNED;
    if (!bypass && (d.w_addr % a || (b_rows && d.w_stride % a))) return STATUS_MISALIGNED;
    if ((bias && d.bias_addr % a) || (residual && (d.res_addr % a || d.res_stride % a))) return STATUS_MISALIGNED;

    if (rows_end(d.x_addr, d.m, d.x_stride, d.k, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (rows_end(d.out_addr, d.m, d.out_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (residual && rows_end(d.res_addr, d.m, d.res_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (!bypass) {
        const uint64_t w_end = b_rows ? rows_end(d.w_addr, d.k, d.w_stride, d.n, T::act_bytes)
                                      : uint64_t(d.w_addr) + uint64_t(d.n_tiles) * d.k_tiles * CONFIG_T::weight_tile_words * a;
        if (w_end > image_bytes) return STATUS_OUT_OF_BOUNDS;
    }
    if (bias && uint64_t(d.bias_addr) + uint64_t(d.n_tiles) * CONFIG_T::lanes_out * T::bias_bytes > image_bytes)
        return STATUS_OUT_OF_BOUNDS;
    return STATUS_OK;
}

// STATUS_OK, or why the controller must refuse row descriptor `d` before touching DDR.
template <class CONFIG_T>
status_code check_rows(const row_descriptor& d, uint32_t image_bytes) {
    typedef accel_types<CONFIG_T> T;
    const bool layernorm = d.opcode == OPCODE_LAYERNORM;
    if (layernorm ? !CONFIG_T::has_layernorm : !CONFIG_T::has_softmax) return STATUS_BAD_OPCODE;
    if (!d.reserved_clear || d.m == 0 || d.n == 0 || d.n > CONFIG_T::row_max) return STATUS_BAD_DESCRIPTOR;
    if (!layernorm && (d.gamma_addr != 0 || d.beta_addr != 0 || d.d_offset != 0)) return STATUS_BAD_DESCRIPTOR;
    // ε < 1: d_offset = N²·round(ε·2^2F) < N²·2^2F (the golden model refuses others too).
    if (layernorm && ap_uint<128>(d.d_offset) >= (ap_uint<128>(d.n * d.n) << (2 * CONFIG_T::layernorm_frac_bits)))
        return STATUS_BAD_DESCRIPTOR;

    const uint32_t a = T::axi_bytes;
    if (d.x_addr % a || d.x_stride % a || d.out_addr % a || d.out_stride % a) return STATUS_MISALIGNED;
    if (layernorm && (d.gamma_addr % a || d.beta_addr % a)) return STATUS_MISALIGNED;

    if (rows_end(d.x_addr, d.m, d.x_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (rows_end(d.out_addr, d.m, d.out_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (layernorm && (rows_end(d.gamma_addr, 1, 0, d.n, T::act_bytes) > image_bytes ||
                      rows_end(d.beta_addr, 1, 0, d.n, T::act_bytes) > image_bytes))
        return STATUS_OUT_OF_BOUNDS;
    return STATUS_OK;
}

// ---------------------------------------------------------------------------------- the kernel

// The row units. A unit the configuration lacks (its formats cannot be built, see
// hwgen.hls.accelerator) is an empty specialization: check_rows refuses its opcode first.
template <class CONFIG_T, bool PRESENT = CONFIG_T::has_layernorm>
struct layernorm_unit {
    static void run(typename accel_types<CONFIG_T>::word_t*, const row_descriptor&) {}
};

// One LAYERNORM descriptor: γ and β once, then per row: read, normalize, write.
template <class CONFIG_T>
struct layernorm_unit<CONFIG_T, true> {
    static void run(typename accel_types<CONFIG_T>::word_t* mem, const row_descriptor& d) {
        typedef typename CONFIG_T::layernorm U;
        static const unsigned row_max = CONFIG_T::row_max;
        // Cyclic partitions by the containers per AXI word: a beat fills or drains them in one cycle.
        static const unsigned per_word = CONFIG_T::axi_bits / CONFIG_T::act_bits;
        static typename U::in_t x[row_max];
        #pragma HLS ARRAY_PARTITION variable=x cyclic factor=per_word
        static typename U::gamma_t gamma[row_max];
        #pragma HLS ARRAY_PARTITION variable=gamma cyclic factor=per_word
        static typename U::beta_t beta[row_max];
        #pragma HLS ARRAY_PARTITION variable=beta cyclic factor=per_word
        static typename U::out_t out[row_max];
        #pragma HLS ARRAY_PARTITION variable=out cyclic factor=per_word
        read_row<CONFIG_T, typename U::gamma_t, row_max>(mem, d.gamma_addr, d.n, gamma);
        read_row<CONFIG_T, typename U::beta_t, row_max>(mem, d.beta_addr, d.n, beta);
        const ap_uint<U::d_bits> d_offset = d.d_offset;  // < N²·2^2F fits D's width (check_rows)
    LayerNormRows:
        for (uint32_t m = 0; m < d.m; m++) {
            #pragma HLS LOOP_TRIPCOUNT min=1 max=256
            read_row<CONFIG_T, typename U::in_t, row_max>(mem, d.x_addr + m * d.x_stride, d.n, x);
            layernorm<U>(x, gamma, beta, out, d.n, d_offset);
            write_row<CONFIG_T, typename U::out_t, row_max>(mem, d.out_addr + m * d.out_stride, d.n, out);
        }
    }
};

template <class CONFIG_T, bool PRESENT = CONFIG_T::has_softmax>
struct softmax_unit {
    static void run(typename accel_types<CONFIG_T>::word_t*, const row_descriptor&) {}
};

// One SOFTMAX descriptor: per row, read, softmax (statistics pass, then normalization), write.
template <class CONFIG_T>
struct softmax_unit<CONFIG_T, true> {
    static void run(typename accel_types<CONFIG_T>::word_t* mem, const row_descriptor& d) {
        typedef typename CONFIG_T::softmax U;
        static const unsigned row_max = CONFIG_T::row_max;
        static const unsigned per_word = CONFIG_T::axi_bits / CONFIG_T::act_bits;
        static typename U::in_t x[row_max];
        #pragma HLS ARRAY_PARTITION variable=x cyclic factor=per_word
        static typename U::out_t out[row_max];
        #pragma HLS ARRAY_PARTITION variable=out cyclic factor=per_word
    SoftmaxRows:
        for (uint32_t m = 0; m < d.m; m++) {
            #pragma HLS LOOP_TRIPCOUNT min=1 max=256
            read_row<CONFIG_T, typename U::in_t, row_max>(mem, d.x_addr + m * d.x_stride, d.n, x);
            softmax<U>(x, out, d.n);
            write_row<CONFIG_T, typename U::out_t, row_max>(mem, d.out_addr + m * d.out_stride, d.n, out);
        }
    }
};

// One LINEAR descriptor in the loop order of docs/isa.md §3.4: chunk c+1's weights (row m+1 of
// x) load into the other half of the ping-pong bank before chunk c (row m) is computed from the
// first, so the load never overwrites what the array reads. Results do not depend on whether the
// tool overlaps the two.
template <class CONFIG_T>
void run_linear(typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d,
                typename accel_types<CONFIG_T>::x_t x_bank[2][CONFIG_T::x_rows][accel_types<CONFIG_T>::x_lanes],
                typename accel_types<CONFIG_T>::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out],
                typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements],
                typename accel_types<CONFIG_T>::act_raw_t res_row[2][accel_types<CONFIG_T>::row_elements],
                typename accel_types<CONFIG_T>::act_raw_t out_row[2][accel_types<CONFIG_T>::row_elements], uint64_t& steps) {
    typedef accel_types<CONFIG_T> T;
    const bool bypass = d.flags & FLAG_BYPASS;
    const bool residual = d.flags & FLAG_RESIDUAL;
    const bool x_unsigned = d.flags & FLAG_X_UNSIGNED;
    post_ops ops;
    ops.rq1 = decode_requant(d.rq1);
    ops.rq2 = decode_requant(d.rq2);
    ops.relu1 = d.flags & FLAG_RELU1;
    ops.gelu = d.flags & FLAG_GELU;
    ops.residual = residual;
    ops.relu2 = d.flags & FLAG_RELU2;
    ops.r_unsigned = d.flags & FLAG_R_UNSIGNED;
    ops.y_shift = d.y_shift;
    ops.r_shift = d.r_shift;

    const unsigned chunks = (d.n_tiles + d.chunk_tiles - 1) / d.chunk_tiles;
    const unsigned x_rows = bypass ? d.n_tiles : d.k_tiles;
    if (!bypass) load_chunk<CONFIG_T>(mem, d, 0, w_bank, bias_bank, 0);
Chunks:
    for (unsigned chunk = 0; chunk < chunks; chunk++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=16
        const unsigned w_sel = chunk & 1;
        if (!bypass && chunk + 1 < chunks) load_chunk<CONFIG_T>(mem, d, chunk + 1, w_bank, bias_bank, w_sel ^ 1);
        const unsigned first_tile = chunk * d.chunk_tiles;
        const unsigned tiles = d.n_tiles - first_tile < d.chunk_tiles ? d.n_tiles - first_tile : d.chunk_tiles;
        const unsigned first_column = first_tile * CONFIG_T::lanes_out;
        const unsigned columns = d.n - first_column < tiles * CONFIG_T::lanes_out ? d.n - first_column : tiles * CONFIG_T::lanes_out;
        const uint32_t column_offset = first_column * T::act_bytes;

        if (bypass) load_x_row<CONFIG_T, CONFIG_T::lanes_out>(mem, d.x_addr, d.k, x_rows, x_unsigned, x_bank, 0);
        else load_x_row<CONFIG_T, CONFIG_T::lanes_in>(mem, d.x_addr, d.k, x_rows, x_unsigned, x_bank, 0);
    Rows:
        for (uint32_t m = 0; m < d.m; m++) {
            #pragma HLS LOOP_TRIPCOUNT min=1 max=256
            const unsigned sel = m & 1;
            if (m + 1 < d.m) {
                const uint32_t next = d.x_addr + (m + 1) * d.x_stride;
                if (bypass) load_x_row<CONFIG_T, CONFIG_T::lanes_out>(mem, next, d.k, x_rows, x_unsigned, x_bank, sel ^ 1);
                else load_x_row<CONFIG_T, CONFIG_T::lanes_in>(mem, next, d.k, x_rows, x_unsigned, x_bank, sel ^ 1);
            }
            if (residual) {
                read_containers<CONFIG_T, CONFIG_T::act_bits, T::row_elements>(
                    mem, d.res_addr + m * d.res_stride + column_offset, columns, res_row, sel);
            }
            compute_row<CONFIG_T>(x_bank, sel, w_bank, bias_bank, w_sel, res_row, out_row, sel, first_tile, tiles, d.k_tiles, bypass,
                                  d.flags & FLAG_BIAS, ops);
            write_containers<CONFIG_T>(mem, d.out_addr + m * d.out_stride + column_offset, columns, out_row, sel);
            steps += uint64_t(tiles) * (bypass ? 1 : d.k_tiles);
        }
    }
}

// Runs the Program at `program_addr`: checks the header, then executes the descriptors in order
// until the last or the first one it must refuse. `status` is a status_code, `executed` counts
// the descriptors completed, `array_steps` the compute array's issue steps (the ideal cycles).
template <class CONFIG_T>
void accelerator(typename accel_types<CONFIG_T>::word_t* mem, ap_uint<32> program_addr, ap_uint<32>& status,
                 ap_uint<32>& executed, ap_uint<64>& array_steps) {
    typedef accel_types<CONFIG_T> T;
    static_assert(CONFIG_T::axi_bits == 64 || CONFIG_T::axi_bits == 128, "axi_bits must be 64 or 128");
    static_assert(CONFIG_T::act_bits % 8 == 0 && CONFIG_T::weight_bits % 8 == 0, "containers must be whole bytes");
    static_assert(CONFIG_T::bias_bits == (CONFIG_T::acc_bits <= 32 ? 32 : 64), "bias containers follow acc_bits");
    static_assert(CONFIG_T::acc_bits <= 48, "acc_bits must fit a DSP48E2 accumulator");

    // Ping-pong banks: index 0/1 of the first dimension are separate memories. The array reads a
    // whole tile (lanes_in memories of lanes_out-wide words) and lanes_out bias/row entries per cycle.
    static const unsigned lanes_out = CONFIG_T::lanes_out;
    static typename T::x_t x_bank[2][CONFIG_T::x_rows][T::x_lanes];
    #pragma HLS ARRAY_PARTITION variable=x_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=x_bank dim=3 complete
    static typename T::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out];
    #pragma HLS ARRAY_PARTITION variable=w_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=w_bank dim=3 complete
    #pragma HLS ARRAY_RESHAPE variable=w_bank dim=4 complete
    #pragma HLS BIND_STORAGE variable=w_bank type=ram_s2p impl=bram
    static typename T::bias_raw_t bias_bank[2][T::bias_elements];
    #pragma HLS ARRAY_PARTITION variable=bias_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=bias_bank dim=2 cyclic factor=lanes_out
    static typename T::act_raw_t res_row[2][T::row_elements];
    #pragma HLS ARRAY_PARTITION variable=res_row dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=res_row dim=2 cyclic factor=lanes_out
    static typename T::act_raw_t out_row[2][T::row_elements];
    #pragma HLS ARRAY_PARTITION variable=out_row dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=out_row dim=2 cyclic factor=lanes_out

    uint64_t steps = 0;
    uint32_t done = 0;
    status = STATUS_OK;
    executed = 0;
    array_steps = 0;
    const uint32_t base = program_addr.to_uint();
    if (base % T::axi_bytes) {
        status = STATUS_MISALIGNED;
        return;
    }
    uint32_t header[16];
    fetch_block<CONFIG_T>(mem, base, header);
    status_code code = STATUS_OK;
    if (header[0] != MAGIC) code = STATUS_BAD_MAGIC;
    else if (header[1] != VERSION) code = STATUS_BAD_VERSION;
    else if (header[2] != CONFIG_T::fingerprint) code = STATUS_BAD_FINGERPRINT;
    else if (header[4] != DESCRIPTOR_BYTES || uint64_t(base) + DESCRIPTOR_BYTES * (uint64_t(header[3]) + 1) > header[5])
        code = STATUS_BAD_HEADER;
    const uint32_t count = code == STATUS_OK ? header[3] : 0;
    const uint32_t image_bytes = header[5];
Descriptors:
    for (uint32_t index = 0; index < count; index++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=64
        uint32_t words[16];
        fetch_block<CONFIG_T>(mem, base + DESCRIPTOR_BYTES * (index + 1), words);
        const unsigned opcode = words[0] & 0xFF;
        if (opcode == OPCODE_LAYERNORM || opcode == OPCODE_SOFTMAX) {
            // Row units do no MACs: array_steps is unchanged.
            const row_descriptor d = decode_rows(words);
            code = check_rows<CONFIG_T>(d, image_bytes);
            if (code != STATUS_OK) break;
            if (opcode == OPCODE_LAYERNORM) layernorm_unit<CONFIG_T>::run(mem, d);
            else softmax_unit<CONFIG_T>::run(mem, d);
        } else {
            const linear_descriptor d = decode_linear(words);
            code = check_linear<CONFIG_T>(d, image_bytes);  // BAD_OPCODE for every other opcode
            if (code != STATUS_OK) break;
            run_linear<CONFIG_T>(mem, d, x_bank, w_bank, bias_bank, res_row, out_row, steps);
        }
        done++;
    }
    status = code;
    executed = done;
    array_steps = steps;
}

} // namespace hwgen

#endif
