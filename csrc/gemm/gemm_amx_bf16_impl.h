// The AMX-BF16 tile of the half GEMM core (AVX-512 builds; run only where the CPU has AMX-TILE
// and AMX-BF16 and the OS grants this process the tile data state): a 32 x 32 block of C is four
// 16 x 16 float32 accumulator tiles, fed per 32 k by two A tiles (16 rows x 32 bfloat16) and two
// B tiles (16 pairs of k x 16 columns), four tdpbf16ps: 16 Ki multiply-adds per 4 KiB loaded.
// A is packed per 32 k as 32 rows of 64 bytes; B as pairs of k (the pair tile's format), 32
// columns wide; K is padded with zeros to whole 32-k blocks. Traffic as the other tiles.
#pragma once

#if !defined(KK_ISA_AVX512)
#error "gemm_amx_bf16_impl.h is for the AVX-512 build only"
#endif

#include <immintrin.h>

#include <cstdint>

#include "common/dtype.h"
#include "gemm/gemm_bf16_pairs_impl.h"
#include "gemm/gemm_core_impl.h"

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

constexpr int kAmxRows = 32, kAmxCols = 32;
constexpr int kAmxPairsPerBlock = 16;  // pairs of k per tile row: 64 bytes
constexpr int64_t kAmxKC = 512;        // a 512-k sliver of B (32 columns) is 32 KiB: L1
// A tile product reads 1 KiB per 16 cycles; A's tiles stream from L2 while B's sliver stays in
// L1, so a panel of B (KC x NC: 512 KiB) and a block of A (MC x KC: 128 KiB) are kept well
// inside L2. Measured on a 2 MiB-L2 Xeon, 2048^3 on one thread: NC 2048 / 1024 / 512 / 256 =
// 0.66 / 0.70 / 0.78 / 0.69 of torch's bfloat16 matmul; MC 64 / 128 / 256 = 0.79 / 0.8 / 0.75.
constexpr int64_t kAmxNC = 512;
constexpr int64_t kAmxMC = 128;

// A[0:rows, 0:kc] (rows <= 32) into blocks of 32 k: out[blk * 512 + i * 16 + q] = the pair
// (A[i, 32 blk + 2 q], A[i, 32 blk + 2 q + 1]); rows past `rows` and k past kc are zero.
inline void pack_a_amx(const bf16_bits* a, int64_t rs, int64_t cs, int64_t kc, int64_t rows,
                       uint32_t* out) {
  const int64_t blocks = (kc + 31) / 32;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t k0 = 32 * blk, n = std::min<int64_t>(32, kc - k0);
    uint32_t* dst = out + blk * kAmxRows * kAmxPairsPerBlock;
    if (cs == 1) {
      // a row's 32 values are one (masked) 64-byte load
      const __mmask32 mask = n == 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
      for (int64_t i = 0; i < kAmxRows; ++i) {
        const __m512i v = i < rows ? _mm512_maskz_loadu_epi16(mask, a + i * rs + k0)
                                   : _mm512_setzero_si512();
        _mm512_storeu_si512(dst + i * kAmxPairsPerBlock, v);
      }
      continue;
    }
    for (int64_t i = 0; i < kAmxRows; ++i)
      for (int64_t q = 0; q < kAmxPairsPerBlock; ++q) {
        const int64_t k = k0 + 2 * q;
        dst[i * kAmxPairsPerBlock + q] =
            i < rows && k < kc ? bf16_pair(a + i * rs + k * cs, cs, k + 1 < kc) : 0u;
      }
  }
}

template <class T> struct DenseAmxA {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, uint32_t* out) const {
    pack_a_amx(p + i0 * rs + k0 * cs, rs, cs, kc, rows, out);
  }
};

template <class T> struct DenseAmxB {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, uint32_t* out) const {
    pack_b_pairs<kAmxCols>(p + k0 * rs + j0 * cs, rs, cs, kc, cols, out);
    zero_padding(kc, out);
  }
  // The panel's slivers (sliver s at out + s * stride), as pack per sliver.
  void pack_panel(int64_t k0, int64_t kc, int64_t j0, int64_t cols, int64_t stride,
                  uint32_t* out) const {
    pack_panel_by_rows<kAmxCols>(*this, p + k0 * rs + j0 * cs, rs, cs, k0, kc, j0, cols, stride,
                                 out);
    if (cs == 1)  // (pack zeroes the slivers it packs itself)
      for (int64_t s = 0; s < cols / kAmxCols; ++s) zero_padding(kc, out + s * stride);
  }
  // Pairs past kc up to whole tile rows.
  static void zero_padding(int64_t kc, uint32_t* sliver) {
    const int64_t pairs = (kc + 1) / 2, padded = round_up(pairs, kAmxPairsPerBlock);
    std::fill(sliver + pairs * kAmxCols, sliver + padded * kAmxCols, 0u);
  }
};

// The tile registers' shapes: 0-3 the accumulators C00 C01 C10 C11, 4-5 A's two row halves,
// 6-7 B's two column halves; every tile 16 rows of 64 bytes.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  AmxTileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

// c[0:32, 0:32] = (accumulate ? c : 0) + the tile products over the packed 32-k blocks.
__attribute__((noinline, target("amx-tile,amx-bf16"))) inline void micro_kernel_amx_bf16(
    int64_t kc, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc,
    bool accumulate) {
  const int64_t ldc_bytes = ldc * int64_t(sizeof(float));
  if (accumulate) {
    _tile_loadd(0, c, ldc_bytes);
    _tile_loadd(1, c + 16, ldc_bytes);
    _tile_loadd(2, c + 16 * ldc, ldc_bytes);
    _tile_loadd(3, c + 16 * ldc + 16, ldc_bytes);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const int64_t blocks = (kc + 31) / 32;
  constexpr int64_t a_block = kAmxRows * kAmxPairsPerBlock;  // words
  constexpr int64_t b_block = kAmxPairsPerBlock * kAmxCols;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint32_t* a = ap + blk * a_block;
    const uint32_t* b = bp + blk * b_block;
    // Each load right before the first product that needs it, so loads overlap products.
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, kAmxCols * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b + 16, kAmxCols * 4);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a + 16 * kAmxPairsPerBlock, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, ldc_bytes);
  _tile_stored(1, c + 16, ldc_bytes);
  _tile_stored(2, c + 16 * ldc, ldc_bytes);
  _tile_stored(3, c + 16 * ldc + 16, ldc_bytes);
}

// The shapes are set per thread's share of a product (gemm_serial's begin / end), not kept:
// other code on this thread (oneDNN in torch) sets its own between our calls.
__attribute__((target("amx-tile"))) inline void amx_tiles_begin() {
  static const AmxTileConfig config;
  _tile_loadconfig(&config);
}
__attribute__((target("amx-tile"))) inline void amx_tiles_end() { _tile_release(); }

struct AmxBf16Tile {
  using Packed = uint32_t;
  static constexpr int kMR = kAmxRows, kNR = kAmxCols;
  static constexpr int64_t kKC = kAmxKC;
  static constexpr int64_t kNC = kAmxNC, kMC = kAmxMC;
  static constexpr int64_t kStretchBytes = 0;  // blocks of more than kMC rows: panel by panel
  // pairs of k, padded to whole tile rows
  static int64_t steps(int64_t kc) { return round_up((kc + 1) / 2, kAmxPairsPerBlock); }
  static void begin() { amx_tiles_begin(); }
  static void end() { amx_tiles_end(); }
  static void micro(int64_t kc, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc,
                    bool accumulate) {
    micro_kernel_amx_bf16(kc, ap, bp, c, ldc, accumulate);
  }
};

// The compute floor of the AMX tile: four accumulators += tdpbf16ps of two A and two B tiles
// (register-resident, reloaded from L1 each step). Returns the flops done: 2 x 16 x 16 x 32
// per tdpbf16ps.
__attribute__((noinline, target("amx-tile,amx-bf16"))) inline double amx_bf16_loop(
    int64_t steps, const uint32_t* seeds, uint64_t* sink) {
  static const AmxTileConfig config;
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, seeds, 64);
    _tile_loadd(5, seeds + 256, 64);
    _tile_loadd(6, seeds + 512, 64);
    _tile_loadd(7, seeds + 768, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float out[16 * 16];
  _tile_stored(0, out, 64);
  _tile_release();
  *sink ^= uint64_t(out[0] != 0.0f);
  return double(steps) * 4 * 2 * 16 * 16 * 32;
}

}  // namespace half_gemm_detail
}  // namespace KK_ISA
}  // namespace kernelkit
