// SPDX-License-Identifier: Apache-2.0
//
// The hwgen accelerator in Vitis HLS. The top (`accelerator`) is the controller: it fetches the
// Program's header and descriptors from DDR, decodes them, checks them against the one validity
// rule of docs/isa.md (hwgen.isa.rules) and dispatches each to its engine, one function per
// opcode family:
//
//   linear_engine     LINEAR: weight load (tiles, or B_ROWMAJOR / B_TRANSPOSED activations) and
//                     bias into a ping-pong weight bank, x load into a ping-pong activation bank,
//                     the MAC array (compute_unit.h `mac_array`), the post-processing lanes
//                     (`post_lanes`) and the write of each row segment
//   layernorm_engine  LAYERNORM on the row unit of layernorm.h
//   softmax_engine    SOFTMAX on the row unit of softmax.h
//
// Opcodes, flags, status codes and field positions come from the generated hwgen_isa.h. The
// weight and activation banks belong to the controller and are handed to the engine that uses
// them, so later engines (attention, convolution) drive the same MAC array on the same banks.
//
// docs/isa.md is the contract: the header check, every descriptor field and flag, the weight chunks
// and loop order of §3.4, the requantization of §3.5 and the row descriptors of §3.6. isa_sim
// executes the same Program on the same memory image, and the C-simulation tests compare the two
// byte for byte.
#ifndef HWGEN_ACCELERATOR_H_
#define HWGEN_ACCELERATOR_H_

#include <ap_int.h>
#include <hls_stream.h>
#include <stdint.h>

#include "compute_unit.h"
#include "fixed_raw.h"
#include "hwgen_isa.h"
#include "layernorm.h"
#include "requantize_rt.h"
#include "softmax.h"

namespace hwgen {

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
    // The capacities of the validity rule (hwgen.isa.rules.Limits): a descriptor needs
    // k_tiles <= max_k_tiles, chunk_tiles <= max_chunk_tiles and a chunk's bytes within
    // weight_buffer_bytes. The banks hold exactly that: max_k_tiles x rows, weight_tiles tiles
    // (the most tiles an accepted chunk has), max_chunk_tiles output tiles of bias and row segment.
    static const unsigned weight_buffer_bytes = 65536;
    static const unsigned max_k_tiles = 128;
    static const unsigned max_chunk_tiles = 204;
    static const unsigned weight_tiles = 256;
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

// ----------------------------------------------------------------------------------- decode

// A LINEAR descriptor's fields (docs/isa.md §3.3).
struct linear_descriptor {
    uint32_t opcode, flags, m, k, n, k_tiles, n_tiles;
    uint32_t x_addr, w_addr, bias_addr, res_addr, out_addr;
    uint32_t x_stride, w_stride, res_stride, out_stride;
    uint32_t rq1, rq2, chunk_tiles, y_shift, r_shift;
};

inline linear_descriptor decode_linear(const uint32_t w[16]) {
    linear_descriptor d;
    d.opcode = linear_opcode(w);
    d.flags = linear_flags(w);
    d.m = linear_m(w);
    d.k = linear_k(w);
    d.n = linear_n(w);
    d.k_tiles = linear_k_tiles(w);
    d.n_tiles = linear_n_tiles(w);
    d.x_addr = linear_x_addr(w);
    d.w_addr = linear_w_addr(w);
    d.bias_addr = linear_bias_addr(w);
    d.res_addr = linear_res_addr(w);
    d.out_addr = linear_out_addr(w);
    d.x_stride = linear_x_stride(w);
    d.w_stride = linear_w_stride(w);
    d.res_stride = linear_res_stride(w);
    d.out_stride = linear_out_stride(w);
    d.rq1 = linear_rq1(w);
    d.rq2 = linear_rq2(w);
    d.chunk_tiles = linear_chunk_tiles(w);
    d.y_shift = linear_y_shift(w);
    d.r_shift = linear_r_shift(w);
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
    d.opcode = row_opcode(w);
    d.m = row_m(w);
    d.n = row_n(w);
    d.x_addr = row_x_addr(w);
    d.gamma_addr = row_gamma_addr(w);
    d.beta_addr = row_beta_addr(w);
    d.out_addr = row_out_addr(w);
    d.x_stride = row_x_stride(w);
    d.out_stride = row_out_stride(w);
    d.d_offset = (ap_uint<96>(row_d_offset2(w)) << 64) | (ap_uint<96>(row_d_offset1(w)) << 32) | ap_uint<96>(row_d_offset0(w));
    d.reserved_clear = row_reserved0(w) == 0 && row_reserved2(w) == 0 && row_reserved3(w) == 0 && row_reserved7(w) == 0 &&
                       row_reserved10(w) == 0 && row_reserved11(w) == 0;
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

// ------------------------------------------------------------------------------ the validity rule
// docs/isa.md "Validity" (hwgen.isa.rules.check_header / check_descriptor): the first failing
// category wins, in the order BAD_OPCODE, BAD_DESCRIPTOR, DOES_NOT_FIT, MISALIGNED, OUT_OF_BOUNDS,
// so every executor reports the same code for the same descriptor.

// Ends (exclusive) of rows × columns containers of `bytes` each, `stride` apart, from `addr`.
inline uint64_t rows_end(uint32_t addr, uint32_t rows, uint32_t stride, uint32_t columns, unsigned bytes) {
    return uint64_t(addr) + uint64_t(rows - 1) * stride + uint64_t(columns) * bytes;
}

// The header at byte `program_offset` of the image (already known to be AXI-aligned).
template <class CONFIG_T>
status_code check_header(const uint32_t h[16], uint32_t program_offset) {
    if (header_magic(h) != MAGIC) return STATUS_BAD_MAGIC;
    if (header_version(h) != VERSION) return STATUS_BAD_VERSION;
    if (header_fingerprint(h) != CONFIG_T::fingerprint) return STATUS_BAD_FINGERPRINT;
    if (header_descriptor_bytes(h) != DESCRIPTOR_BYTES ||
        uint64_t(program_offset) + uint64_t(DESCRIPTOR_BYTES) * (uint64_t(header_count(h)) + 1) > header_image_bytes(h))
        return STATUS_BAD_HEADER;
    return STATUS_OK;
}

// STATUS_OK, or why the controller must refuse LINEAR descriptor `d` before touching DDR.
template <class CONFIG_T>
status_code check_linear(const linear_descriptor& d, uint32_t image_bytes) {
    typedef accel_types<CONFIG_T> T;
    const bool bypass = d.flags & FLAG_BYPASS, bias = d.flags & FLAG_BIAS, residual = d.flags & FLAG_RESIDUAL;
    const bool b_rows = d.flags & FLAG_B_ROWMAJOR, b_cols = d.flags & FLAG_B_TRANSPOSED;
    // 2. BAD_DESCRIPTOR
    if (d.flags & ~uint32_t(FLAGS_DEFINED)) return STATUS_BAD_DESCRIPTOR;
    if (b_rows && b_cols) return STATUS_BAD_DESCRIPTOR;
    if (bypass && (bias || b_rows || b_cols || (d.flags & FLAG_W_UNSIGNED))) return STATUS_BAD_DESCRIPTOR;
    if (d.m == 0 || d.k == 0 || d.n == 0) return STATUS_BAD_DESCRIPTOR;
    if (d.k_tiles != (d.k + CONFIG_T::lanes_in - 1) / CONFIG_T::lanes_in) return STATUS_BAD_DESCRIPTOR;
    if (d.n_tiles != (d.n + CONFIG_T::lanes_out - 1) / CONFIG_T::lanes_out) return STATUS_BAD_DESCRIPTOR;
    if (d.chunk_tiles == 0 || d.chunk_tiles > d.n_tiles) return STATUS_BAD_DESCRIPTOR;
    if (bypass && (d.k != d.n || d.chunk_tiles != d.n_tiles)) return STATUS_BAD_DESCRIPTOR;
    if (!requant_word_valid(d.rq1) || (residual && !requant_word_valid(d.rq2))) return STATUS_BAD_DESCRIPTOR;

    // 3. DOES_NOT_FIT: the capacities of hwgen.isa.rules.Limits, which size the banks.
    if (d.k_tiles > CONFIG_T::max_k_tiles || d.chunk_tiles > CONFIG_T::max_chunk_tiles) return STATUS_DOES_NOT_FIT;
    if (!bypass) {
        const uint64_t tile_bytes = (b_rows || b_cols) ? T::act_tile_bytes : T::weight_tile_bytes;
        const uint64_t chunk_bytes =
            uint64_t(d.chunk_tiles) * (d.k_tiles * tile_bytes + (bias ? CONFIG_T::lanes_out * T::bias_bytes : 0));
        if (chunk_bytes > CONFIG_T::weight_buffer_bytes) return STATUS_DOES_NOT_FIT;
    }

    // 4. MISALIGNED
    const uint32_t a = T::axi_bytes;
    if (d.x_addr % a || d.x_stride % a || d.out_addr % a || d.out_stride % a) return STATUS_MISALIGNED;
    if (!bypass && d.w_addr % a) return STATUS_MISALIGNED;
    if ((b_rows || b_cols) && d.w_stride % a) return STATUS_MISALIGNED;
    if (bias && d.bias_addr % a) return STATUS_MISALIGNED;
    if (residual && (d.res_addr % a || d.res_stride % a)) return STATUS_MISALIGNED;

    // 5. OUT_OF_BOUNDS
    if (rows_end(d.x_addr, d.m, d.x_stride, d.k, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (rows_end(d.out_addr, d.m, d.out_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (residual && rows_end(d.res_addr, d.m, d.res_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (!bypass) {
        const uint64_t w_end = b_rows   ? rows_end(d.w_addr, d.k, d.w_stride, d.n, T::act_bytes)
                               : b_cols ? rows_end(d.w_addr, d.n, d.w_stride, d.k, T::act_bytes)
                                        : uint64_t(d.w_addr) + uint64_t(d.n_tiles) * d.k_tiles * T::weight_tile_bytes;
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
    // 1. BAD_OPCODE: hardware without row units (hwgen.units.row_units_problem).
    if (layernorm ? !CONFIG_T::has_layernorm : !CONFIG_T::has_softmax) return STATUS_BAD_OPCODE;
    // 2. BAD_DESCRIPTOR
    if (!d.reserved_clear || d.m == 0 || d.n == 0 || d.n > CONFIG_T::row_max) return STATUS_BAD_DESCRIPTOR;
    if (!layernorm && (d.gamma_addr != 0 || d.beta_addr != 0 || d.d_offset != 0)) return STATUS_BAD_DESCRIPTOR;
    // ε < 1: d_offset = N²·round(ε·2^2F) < N²·2^2F (the golden model refuses others too).
    if (layernorm && ap_uint<128>(d.d_offset) >= (ap_uint<128>(d.n * d.n) << (2 * CONFIG_T::layernorm_frac_bits)))
        return STATUS_BAD_DESCRIPTOR;
    // 4. MISALIGNED
    const uint32_t a = T::axi_bytes;
    if (d.x_addr % a || d.x_stride % a || d.out_addr % a || d.out_stride % a) return STATUS_MISALIGNED;
    if (layernorm && (d.gamma_addr % a || d.beta_addr % a)) return STATUS_MISALIGNED;
    // 5. OUT_OF_BOUNDS
    if (rows_end(d.x_addr, d.m, d.x_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (rows_end(d.out_addr, d.m, d.out_stride, d.n, T::act_bytes) > image_bytes) return STATUS_OUT_OF_BOUNDS;
    if (layernorm && (rows_end(d.gamma_addr, 1, 0, d.n, T::act_bytes) > image_bytes ||
                      rows_end(d.beta_addr, 1, 0, d.n, T::act_bytes) > image_bytes))
        return STATUS_OUT_OF_BOUNDS;
    return STATUS_OK;
}

// Any descriptor: its opcode picks the check (1. BAD_OPCODE for the opcodes without an engine).
template <class CONFIG_T>
status_code check_descriptor(const uint32_t w[16], uint32_t image_bytes) {
    const uint32_t opcode = linear_opcode(w);
    if (opcode == OPCODE_LINEAR) return check_linear<CONFIG_T>(decode_linear(w), image_bytes);
    if (opcode == OPCODE_LAYERNORM || opcode == OPCODE_SOFTMAX) return check_rows<CONFIG_T>(decode_rows(w), image_bytes);
    return STATUS_BAD_OPCODE;
}

// ------------------------------------------------------------------------------ linear engine

// Weight load, tiles: chunk tiles (output-tile major, docs/isa.md §3.3) into weight bank `sel`.
template <class CONFIG_T>
void load_weight_tiles(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned first_tile,
                       unsigned tiles, typename array_banks<CONFIG_T>::w_bank_t w_bank, unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::weight_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned tile_elements = CONFIG_T::lanes_in * CONFIG_T::lanes_out;
    static const unsigned max_beats = CONFIG_T::weight_tiles * T::weight_tile_words;
    const bool is_unsigned = d.flags & FLAG_W_UNSIGNED;
    const typename T::word_t* src = mem + d.w_addr / T::axi_bytes + first_tile * d.k_tiles * T::weight_tile_words;
    unsigned tile = 0, word_in_tile = 0;
LoadWeightBeats:
    for (unsigned beat = 0; beat < tiles * d.k_tiles * T::weight_tile_words; beat++) {
        // One burst over the whole chunk (its tiles are contiguous), one AXI word per cycle.
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
        if (++word_in_tile == T::weight_tile_words) {
            word_in_tile = 0;
            tile++;
        }
    }
}

// Weight load, B_ROWMAJOR: the chunk's columns of every row k of B (K rows of N activation
// containers) into weight bank `sel`, element (k, n) at tile (n / lanes_out, k / lanes_in),
// position (k % lanes_in, n % lanes_out). The chunk's segment of a row may start inside a word.
template <class CONFIG_T>
void load_b_rows(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned first_tile,
                 unsigned columns, typename array_banks<CONFIG_T>::w_bank_t w_bank, unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_rows = CONFIG_T::max_k_tiles * CONFIG_T::lanes_in;
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

// Weight load, B_TRANSPOSED: the operand is given as N rows of K activation containers (w[k, n]
// at w_addr + n·w_stride + k·act_bytes, as K in Q·Kᵀ); row n of the chunk's columns goes to output
// lane n % lanes_out of tiles (n / lanes_out, k / lanes_in), position k % lanes_in. Rows start on
// AXI words (w_addr and w_stride are aligned), so a row is one burst of ceil(K·act_bytes/axi_bytes).
template <class CONFIG_T>
void load_b_columns(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned first_tile,
                    unsigned columns, typename array_banks<CONFIG_T>::w_bank_t w_bank, unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_columns = T::row_elements;
    static const unsigned max_beats = CONFIG_T::max_k_tiles * CONFIG_T::lanes_in / per_word + 1;
    const bool is_unsigned = d.flags & FLAG_W_UNSIGNED;
    const unsigned beats = (d.k + per_word - 1) / per_word;
LoadBColumns:
    for (unsigned column = 0; column < columns; column++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=max_columns
        const uint32_t n = first_tile * CONFIG_T::lanes_out + column;
        const typename T::word_t* src = mem + (d.w_addr + n * d.w_stride) / T::axi_bytes;
        const unsigned tile = column / CONFIG_T::lanes_out, lane = column % CONFIG_T::lanes_out;
    LoadBColumnBeats:
        for (unsigned beat = 0; beat < beats; beat++) {
            #pragma HLS PIPELINE II=1
            #pragma HLS LOOP_TRIPCOUNT min=1 max=max_beats
            const typename T::word_t data = src[beat];
            for (unsigned slot = 0; slot < per_word; slot++) {
                #pragma HLS UNROLL
                const unsigned k = beat * per_word + slot;
                if (k < d.k) {
                    const ap_uint<bits> raw = data.range(bits * slot + bits - 1, bits * slot);
                    w_bank[sel][tile * d.k_tiles + k / CONFIG_T::lanes_in][k % CONFIG_T::lanes_in][lane] =
                        extend<typename T::w_t, bits>(raw, is_unsigned);
                }
            }
        }
    }
}

// The chunk's first output tile, its output tiles and its output columns.
struct chunk_span {
    unsigned first_tile, tiles, first_column, columns;
};

template <class CONFIG_T>
chunk_span chunk_of(const linear_descriptor& d, unsigned chunk) {
    chunk_span c;
    c.first_tile = chunk * d.chunk_tiles;
    c.tiles = d.n_tiles - c.first_tile < d.chunk_tiles ? d.n_tiles - c.first_tile : d.chunk_tiles;
    c.first_column = c.first_tile * CONFIG_T::lanes_out;
    c.columns = d.n - c.first_column < c.tiles * CONFIG_T::lanes_out ? d.n - c.first_column : c.tiles * CONFIG_T::lanes_out;
    return c;
}

// Weight-load part: everything chunk `chunk` needs in weight bank `sel`, its second operand
// (weight tiles, B rows or B columns) and its bias.
template <class CONFIG_T>
void load_chunk(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, unsigned chunk,
                typename array_banks<CONFIG_T>::w_bank_t w_bank,
                typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements], unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    const chunk_span c = chunk_of<CONFIG_T>(d, chunk);
    if (d.flags & FLAG_B_ROWMAJOR) load_b_rows<CONFIG_T>(mem, d, c.first_tile, c.columns, w_bank, sel);
    else if (d.flags & FLAG_B_TRANSPOSED) load_b_columns<CONFIG_T>(mem, d, c.first_tile, c.columns, w_bank, sel);
    else load_weight_tiles<CONFIG_T>(mem, d, c.first_tile, c.tiles, w_bank, sel);
    if (d.flags & FLAG_BIAS) {
        read_containers<CONFIG_T, CONFIG_T::bias_bits, T::bias_elements>(
            mem, d.bias_addr + c.first_tile * CONFIG_T::lanes_out * T::bias_bytes, c.tiles * CONFIG_T::lanes_out, bias_bank, sel);
    }
}

// X-load part: row m of x into activation bank `sel`, lanes_in elements per bank row, zero
// beyond K so the array's unused input lanes multiply by 0.
template <class CONFIG_T>
void load_x_row(const typename accel_types<CONFIG_T>::word_t* mem, uint32_t addr, unsigned count, unsigned rows,
                bool is_unsigned, typename array_banks<CONFIG_T>::x_bank_t x_bank, unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    static const unsigned bits = CONFIG_T::act_bits;
    static const unsigned lanes = CONFIG_T::lanes_in;
    static const unsigned per_word = CONFIG_T::axi_bits / bits;
    static const unsigned max_beats = CONFIG_T::max_k_tiles * lanes / per_word + 1;
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
                x_bank[sel][element / lanes][element % lanes] = extend<typename T::x_t, bits>(raw, is_unsigned);
            }
        }
    }
ClearXTail:
    for (unsigned element = count; element < rows * lanes; element++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=0 max=lanes
        x_bank[sel][element / lanes][element % lanes] = 0;
    }
}

// X-load part for either path: BYPASS takes the chunk's segment of the row as raw containers
// (the post-processing lanes read it directly), the array a whole row into the activation bank.
template <class CONFIG_T>
void load_x(const typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d, uint32_t m, const chunk_span& c,
            typename array_banks<CONFIG_T>::x_bank_t x_bank,
            typename accel_types<CONFIG_T>::act_raw_t x_row[2][accel_types<CONFIG_T>::row_elements], unsigned sel) {
    typedef accel_types<CONFIG_T> T;
    const uint32_t addr = d.x_addr + m * d.x_stride;
    if (d.flags & FLAG_BYPASS)
        read_containers<CONFIG_T, CONFIG_T::act_bits, T::row_elements>(mem, addr + c.first_column * T::act_bytes, c.columns,
                                                                       x_row, sel);
    else
        load_x_row<CONFIG_T>(mem, addr, d.k, d.k_tiles, d.flags & FLAG_X_UNSIGNED, x_bank, sel);
}

// Array and post-processing parts for one row of one chunk: the MAC array (or BYPASS) and the
// post-processing lanes as two processes joined by a short stream of accumulator vectors, so
// the lanes take one output tile per cycle while the array works on the next.
template <class CONFIG_T>
void array_source(typename array_banks<CONFIG_T>::x_bank_t x_bank,
                  typename accel_types<CONFIG_T>::act_raw_t x_row[2][accel_types<CONFIG_T>::row_elements], unsigned x_sel,
                  typename array_banks<CONFIG_T>::w_bank_t w_bank, unsigned w_sel, unsigned tiles, unsigned k_tiles, bool bypass,
                  bool x_unsigned, hls::stream<acc_vector<CONFIG_T> >& acc) {
    if (bypass) bypass_array<CONFIG_T>(x_row, x_sel, tiles, x_unsigned, acc);
    else mac_array<CONFIG_T>(x_bank, x_sel, w_bank, w_sel, tiles, k_tiles, acc);
}

template <class CONFIG_T>
void compute_row(typename array_banks<CONFIG_T>::x_bank_t x_bank,
                 typename accel_types<CONFIG_T>::act_raw_t x_row[2][accel_types<CONFIG_T>::row_elements], unsigned x_sel,
                 typename array_banks<CONFIG_T>::w_bank_t w_bank,
                 typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements], unsigned w_sel,
                 typename accel_types<CONFIG_T>::act_raw_t res_row[2][accel_types<CONFIG_T>::row_elements],
                 typename accel_types<CONFIG_T>::act_raw_t out_row[2][accel_types<CONFIG_T>::row_elements],
                 const linear_descriptor& d, const chunk_span& c, const post_ops& ops) {
    // The array produces, the lanes consume: overlapped as a dataflow region.
    #pragma HLS DATAFLOW
    hls::stream<acc_vector<CONFIG_T> > acc("acc");
    // Two vectors decouple the array's last reduction step from the lanes' pipeline.
    #pragma HLS STREAM variable=acc depth=2
    array_source<CONFIG_T>(x_bank, x_row, x_sel, w_bank, w_sel, c.tiles, d.k_tiles, d.flags & FLAG_BYPASS,
                           d.flags & FLAG_X_UNSIGNED, acc);
    post_lanes<CONFIG_T>(acc, bias_bank, w_sel, d.flags & FLAG_BIAS, res_row, out_row, x_sel, c.tiles, ops);
}

// One LINEAR descriptor in the loop order of docs/isa.md §3.4: chunk c+1's weights (row m+1 of
// x) load into the other half of the ping-pong bank before chunk c (row m) is computed from the
// first, so the load never overwrites what the array reads. Results do not depend on whether the
// tool overlaps the two. `steps` counts the array's issue steps (BYPASS: one per output tile).
template <class CONFIG_T>
void linear_engine(typename accel_types<CONFIG_T>::word_t* mem, const linear_descriptor& d,
                   typename array_banks<CONFIG_T>::x_bank_t x_bank, typename array_banks<CONFIG_T>::w_bank_t w_bank,
                   typename accel_types<CONFIG_T>::bias_raw_t bias_bank[2][accel_types<CONFIG_T>::bias_elements],
                   typename accel_types<CONFIG_T>::act_raw_t x_row[2][accel_types<CONFIG_T>::row_elements],
                   typename accel_types<CONFIG_T>::act_raw_t res_row[2][accel_types<CONFIG_T>::row_elements],
                   typename accel_types<CONFIG_T>::act_raw_t out_row[2][accel_types<CONFIG_T>::row_elements], uint64_t& steps) {
    typedef accel_types<CONFIG_T> T;
    const bool bypass = d.flags & FLAG_BYPASS;
    const bool residual = d.flags & FLAG_RESIDUAL;
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
    if (!bypass) load_chunk<CONFIG_T>(mem, d, 0, w_bank, bias_bank, 0);
Chunks:
    for (unsigned chunk = 0; chunk < chunks; chunk++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=16
        const unsigned w_sel = chunk & 1;
        if (!bypass && chunk + 1 < chunks) load_chunk<CONFIG_T>(mem, d, chunk + 1, w_bank, bias_bank, w_sel ^ 1);
        const chunk_span c = chunk_of<CONFIG_T>(d, chunk);
        const uint32_t column_offset = c.first_column * T::act_bytes;
        load_x<CONFIG_T>(mem, d, 0, c, x_bank, x_row, 0);
    Rows:
        for (uint32_t m = 0; m < d.m; m++) {
            #pragma HLS LOOP_TRIPCOUNT min=1 max=256
            const unsigned sel = m & 1;
            if (m + 1 < d.m) load_x<CONFIG_T>(mem, d, m + 1, c, x_bank, x_row, sel ^ 1);
            if (residual) {
                read_containers<CONFIG_T, CONFIG_T::act_bits, T::row_elements>(
                    mem, d.res_addr + m * d.res_stride + column_offset, c.columns, res_row, sel);
            }
            compute_row<CONFIG_T>(x_bank, x_row, sel, w_bank, bias_bank, w_sel, res_row, out_row, d, c, ops);
            // Write part: the row segment, bytes beyond column N untouched.
            write_containers<CONFIG_T>(mem, d.out_addr + m * d.out_stride + column_offset, c.columns, out_row, sel);
            steps += uint64_t(c.tiles) * (bypass ? 1 : d.k_tiles);
        }
    }
}

// -------------------------------------------------------------------------------- row engines

// A unit the configuration lacks (its formats cannot be built, see hwgen.hls.accelerator) is an
// empty specialization: check_rows refuses its opcode first.
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

// The row engines do no MACs: array_steps is unchanged.
template <class CONFIG_T>
void layernorm_engine(typename accel_types<CONFIG_T>::word_t* mem, const row_descriptor& d) {
    layernorm_unit<CONFIG_T>::run(mem, d);
}

template <class CONFIG_T>
void softmax_engine(typename accel_types<CONFIG_T>::word_t* mem, const row_descriptor& d) {
    softmax_unit<CONFIG_T>::run(mem, d);
}

// --------------------------------------------------------------------------------- controller

// Runs the Program at `program_addr`: fetch, decode and check the header, then for each
// descriptor in order fetch, check (the one validity rule) and dispatch to its engine, until the
// last or the first one it must refuse. `status` is a hwgen_isa.h status code, `executed` counts
// the descriptors completed, `array_steps` the compute array's issue steps (the ideal cycles).
template <class CONFIG_T>
void accelerator(typename accel_types<CONFIG_T>::word_t* mem, ap_uint<32> program_addr, ap_uint<32>& status,
                 ap_uint<32>& executed, ap_uint<64>& array_steps) {
    typedef accel_types<CONFIG_T> T;
    static_assert(CONFIG_T::axi_bits == 64 || CONFIG_T::axi_bits == 128, "axi_bits must be 64 or 128");
    static_assert(CONFIG_T::act_bits % 8 == 0 && CONFIG_T::weight_bits % 8 == 0, "containers must be whole bytes");
    static_assert(CONFIG_T::bias_bits == (CONFIG_T::acc_bits <= 32 ? 32 : 64), "bias containers follow acc_bits");
    static_assert(CONFIG_T::acc_bits <= 48, "acc_bits must fit a DSP48E2 accumulator");
    static_assert(CONFIG_T::max_k_tiles >= 1 && CONFIG_T::max_chunk_tiles >= 1 && CONFIG_T::weight_tiles >= 1,
                  "every bank holds at least one tile");

    // The banks of the MAC array, owned here so every engine that drives the array shares them.
    // Index 0/1 of the first dimension are separate memories (ping-pong: one loads while the array
    // reads the other). The array reads a whole tile per cycle: lanes_in memories of lanes_out-wide
    // words for the weights, lanes_in registers-wide x rows, and lanes_out bias/row entries.
    static const unsigned lanes_out = CONFIG_T::lanes_out;
    static typename T::x_t x_bank[2][CONFIG_T::max_k_tiles][CONFIG_T::lanes_in];
    #pragma HLS ARRAY_PARTITION variable=x_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=x_bank dim=3 complete
    static typename T::w_t w_bank[2][CONFIG_T::weight_tiles][CONFIG_T::lanes_in][CONFIG_T::lanes_out];
    #pragma HLS ARRAY_PARTITION variable=w_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=w_bank dim=3 complete
    #pragma HLS ARRAY_RESHAPE variable=w_bank dim=4 complete
    // Simple dual port: the loader writes one half while the array reads the other.
    #pragma HLS BIND_STORAGE variable=w_bank type=ram_s2p impl=bram
    static typename T::bias_raw_t bias_bank[2][T::bias_elements];
    #pragma HLS ARRAY_PARTITION variable=bias_bank dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=bias_bank dim=2 cyclic factor=lanes_out
    static typename T::act_raw_t x_row[2][T::row_elements];
    #pragma HLS ARRAY_PARTITION variable=x_row dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=x_row dim=2 cyclic factor=lanes_out
    static typename T::act_raw_t res_row[2][T::row_elements];
    #pragma HLS ARRAY_PARTITION variable=res_row dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=res_row dim=2 cyclic factor=lanes_out
    static typename T::act_raw_t out_row[2][T::row_elements];
    #pragma HLS ARRAY_PARTITION variable=out_row dim=1 complete
    #pragma HLS ARRAY_PARTITION variable=out_row dim=2 cyclic factor=lanes_out

    uint64_t steps = 0;
    uint32_t done = 0, count = 0, image_bytes = 0;
    const uint32_t base = program_addr.to_uint();
    status_code code = STATUS_OK;
    if (base % T::axi_bytes) {
        code = STATUS_MISALIGNED;  // nothing is read
    } else {
        uint32_t header[16];
        fetch_block<CONFIG_T>(mem, base, header);
        code = check_header<CONFIG_T>(header, base);
        count = code == STATUS_OK ? header_count(header) : 0;
        image_bytes = header_image_bytes(header);
    }
Descriptors:
    for (uint32_t index = 0; index < count; index++) {
        #pragma HLS LOOP_TRIPCOUNT min=1 max=64
        uint32_t words[16];
        fetch_block<CONFIG_T>(mem, base + DESCRIPTOR_BYTES * (index + 1), words);
        code = check_descriptor<CONFIG_T>(words, image_bytes);
        if (code != STATUS_OK) break;
        switch (linear_opcode(words)) {
        case OPCODE_LINEAR:
            linear_engine<CONFIG_T>(mem, decode_linear(words), x_bank, w_bank, bias_bank, x_row, res_row, out_row, steps);
            break;
        case OPCODE_LAYERNORM: layernorm_engine<CONFIG_T>(mem, decode_rows(words)); break;
        default: softmax_engine<CONFIG_T>(mem, decode_rows(words)); break;  // SOFTMAX (checked)
        }
        done++;
    }
    status = code;
    executed = done;
    array_steps = steps;
}

} // namespace hwgen

#endif
