// SPDX-License-Identifier: Apache-2.0
//
// C testbench of the hwgen_accel top, for Vitis HLS csim_design / cosim_design and for g++
// (hwgen sim --backend hls). It reads the memory image the build wrote (memory.bin), runs its
// Program from image offset 0, and compares every output region with the golden model's bytes
// in tb_expected.h (int64 raw codes packed into their containers, so equal bytes are equal codes).
//
//   tb [IMAGE [IMAGE_AFTER [TASK]]]
//                               IMAGE defaults to memory.bin; IMAGE_AFTER receives the image after
//                               the run. Exit status 0 only when the run succeeds and every output matches.
//                               TASK (a core with the MoE engine: its TASK register) defaults to the
//                               task of the golden outputs (hwgen_tb::task); another task's outputs
//                               are not compared here (hwgen sim compares them with that task's golden run).
//
// Vitis HLS copies files added with `add_files -tb` into the simulation folder, so IMAGE is also
// looked up there by its base name when the path given does not open.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hwgen_accel_config.h"
#include "tb_expected.h"

typedef ap_uint<hwgen_accel_config::axi_bits> hwgen_word_t;

// The top; with the MoE engine it has the TASK register, last (hwgen_accel_config.h says so).
#ifdef HWGEN_ACCEL_TASK_PORT
void hwgen_accel(hwgen_word_t* mem, ap_uint<32> program_addr, ap_uint<32>& status, ap_uint<32>& executed,
                 ap_uint<64>& array_steps, ap_uint<32> task);
#else
void hwgen_accel(hwgen_word_t* mem, ap_uint<32> program_addr, ap_uint<32>& status, ap_uint<32>& executed,
                 ap_uint<64>& array_steps);
#endif

namespace {

const unsigned axi_bytes = hwgen_accel_config::axi_bits / 8;
const unsigned act_bytes = hwgen_accel_config::act_bits / 8;

FILE* open_image(const char* path) {
    FILE* file = std::fopen(path, "rb");
    if (file) return file;
    const char* slash = std::strrchr(path, '/');
    return slash ? std::fopen(slash + 1, "rb") : 0;
}

bool read_image(const char* path, std::vector<unsigned char>& image) {
    FILE* file = open_image(path);
    if (!file) return false;
    unsigned char chunk[65536];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0) image.insert(image.end(), chunk, chunk + got);
    std::fclose(file);
    return true;
}

long long element(const unsigned char* bytes, bool is_signed) {
    unsigned long long value = 0;
    for (unsigned b = 0; b < act_bytes; b++) value |= (unsigned long long)bytes[b] << (8 * b);
    const unsigned bits = 8 * act_bytes;
    if (is_signed && bits < 64 && (value >> (bits - 1)) & 1) value |= ~0ull << bits;
    return (long long)value;
}

// Element-wise comparison of one output region; prints the first mismatch with both codes.
unsigned check_region(const hwgen_tb::region& r, const std::vector<unsigned char>& image) {
    unsigned bad = 0;
    for (unsigned row = 0; row < r.rows; row++) {
        for (unsigned col = 0; col < r.cols; col++) {
            const unsigned at = r.offset + row * r.row_stride + col * act_bytes;
            const unsigned ref = row * r.cols * act_bytes + col * act_bytes;
            const long long got = element(&image[at], r.is_signed);
            const long long want = element(&r.expected[ref], r.is_signed);
            if (got != want && bad++ == 0)
                std::fprintf(stderr, "tb: %s[%u, %u] is %lld, the golden model says %lld\n", r.name, row, col, got, want);
        }
    }
    std::printf("tb: %s: %s (%u x %u, %u mismatches)\n", r.name, bad ? "FAIL" : "ok", r.rows, r.cols, bad);
    return bad;
}

}  // namespace

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "memory.bin";
    std::vector<unsigned char> image;
    if (!read_image(path, image)) {
        std::printf("tb: cannot open the memory image %s\n", path);
        return 2;
    }
    if (image.size() != hwgen_tb::image_bytes) {
        std::printf("tb: %s holds %u bytes, the build wrote %u\n", path, (unsigned)image.size(), hwgen_tb::image_bytes);
        return 2;
    }
    const size_t words = (image.size() + axi_bytes - 1) / axi_bytes;
    image.resize(words * axi_bytes, 0);
    std::vector<hwgen_word_t> mem(words);
    for (size_t w = 0; w < words; w++)
        for (unsigned b = 0; b < axi_bytes; b++) mem[w].range(8 * b + 7, 8 * b) = image[w * axi_bytes + b];

    ap_uint<32> status, executed;
    ap_uint<64> array_steps;
#ifdef HWGEN_ACCEL_TASK_PORT
    const unsigned task = argc > 3 ? (unsigned)std::strtoul(argv[3], 0, 0) : hwgen_tb::task;
    const bool compare = task == hwgen_tb::task;
    hwgen_accel(mem.data(), 0, status, executed, array_steps, task);
#else
    const bool compare = true;
    hwgen_accel(mem.data(), 0, status, executed, array_steps);
#endif

    for (size_t w = 0; w < words; w++)
        for (unsigned b = 0; b < axi_bytes; b++) image[w * axi_bytes + b] = mem[w].range(8 * b + 7, 8 * b).to_uint();
    image.resize(hwgen_tb::image_bytes);
    std::printf("tb: status %u, %u of %u descriptors executed, %llu array steps\n", status.to_uint(),
                executed.to_uint(), hwgen_tb::descriptors, (unsigned long long)array_steps.to_uint64());
    if (argc > 2) {
        FILE* out = std::fopen(argv[2], "wb");
        if (!out || std::fwrite(image.data(), 1, image.size(), out) != image.size()) {
            std::printf("tb: cannot write %s\n", argv[2]);
            return 2;
        }
        std::fclose(out);
    }
    unsigned bad = status != 0 || executed != hwgen_tb::descriptors ? 1 : 0;
    if (!compare) {
        std::printf("tb: the golden outputs here are another task's: not compared\n");
        if (bad) std::fprintf(stderr, "tb: FAIL: status %u\n", status.to_uint());
        return bad ? 1 : 0;
    }
    for (unsigned i = 0; i < hwgen_tb::region_count; i++) bad += check_region(hwgen_tb::regions[i], image);
    if (bad) {
        std::fprintf(stderr, "tb: FAIL: status %u, %u mismatching codes\n", status.to_uint(), bad);
        return 1;
    }
    std::printf("tb: PASS: every output equals the golden model\n");
    return 0;
}
