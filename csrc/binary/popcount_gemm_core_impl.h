// The XNOR-popcount GEMM core of the binary family (binary_gemm; binary_conv2d reuses it),
// written once over BitVec (common/popcount.h) and compiled once per ISA. Goto/BLIS loops over
// 64-bit k-words: per (KC x NC) panel of B, packed per thread as slivers of NR columns
// interleaved per k-word; per (MC x KC) block of A, slivers of MR rows; an MR x NR register
// tile whose accumulators hold one output column's count per 64-bit lane (acc += popcount(
// broadcast(a word) ^ B words): no horizontal sums). A is read N / NC times, B once; counts go
// from registers through an L1 tile straight to the epilogue (an int32 block of C only when
// K spans several KC panels).
//
// Reuse (binary_conv2d): an A source with pack(i0, rows, kw0, kwc, uint64_t* out) writing
// out[kw * MR + i] (rows past `rows` zero), a B source with pack(kw0, kwc, j0, cols, out)
// writing out[kw * NR + j] (BitsA / BitsB pack pack_signs words; an im2col source packs its
// patches the same way), bits past K equal in both operands (zero), and an epilogue with
// store(counts, ldc, i0, j0, rows, cols). Then Split sp = split(plan, threads), Blocking
// bl = blocking(plan, sp), bl.words() uint64 of scratch per thread allocated before the
// parallel region, and gemm_share(a, b, ep, plan, sp, bl, carve(scratch_t, bl), t) on
// threads t < sp.threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/popcount.h"
#include "common/scratch.h"
#include "common/tiling.h"

namespace kernelkit {
namespace KK_ISA {
namespace popcount_gemm {

// Register tile: MR rows x NV BitVecs of columns. AVX-512: 24 accumulators + 4 B vectors of
// the 32 zmm registers. AVX2: 8 byte-count accumulators + 2 B vectors + the nibble table,
// mask and temporaries in 16 ymm. Portable: small, the compiler's registers.
#if defined(KK_ISA_AVX512)
constexpr int MR = 6, NV = 4;
#elif defined(KK_ISA_AVX2)
constexpr int MR = 4, NV = 2;
#else
constexpr int MR = 4, NV = 2;
#endif
constexpr int NR = NV * kBitVecWords;  // columns of the tile: 32 (AVX-512), 8 (AVX2), 4
constexpr int64_t KC = 128;             // k-words of a panel: a KC x NR sliver of B in L1
constexpr int64_t MC = 504;             // rows of an A block (MC x KC words: 504 KiB) in L2
constexpr int64_t NC = 2048;            // columns of a B panel (KC x NC words) in L2/L3
// The int32 count block used when K spans several KC panels: MB x NC counts per thread.
constexpr int64_t kCountBlock = int64_t(1) << 20;

// ---- packed sign bits: the operands ----

// A bit matrix in int32 words (pack_signs' layout), one line per row of A or column of B:
// word w of line l at p[l * line_stride + w * word_stride], `words` words per line. The
// 64-bit k-word kw of a line is words 2 kw (low half) and 2 kw + 1 (high half, zero past the
// end), the order of the bits in memory.
struct PackedBits {
  const int32_t* p = nullptr;
  int64_t line_stride = 0, word_stride = 0, words = 0;
  int64_t kwords() const { return (words + 1) / 2; }
  uint32_t word(int64_t line, int64_t w) const {
    return w < words ? uint32_t(p[line * line_stride + w * word_stride]) : 0u;
  }
  uint64_t kword(int64_t line, int64_t kw) const {
    return uint64_t(word(line, 2 * kw)) | uint64_t(word(line, 2 * kw + 1)) << 32;
  }
};

// Lines [line0, line0 + lines) (lines <= L), k-words [kw0, kw0 + kwc) into out[kw * L + l],
// lines past `lines` zero: the sliver layout of both A (L = MR) and B (L = NR).
template <int L>
void pack_lines(const PackedBits& bits, int64_t line0, int64_t lines, int64_t kw0, int64_t kwc,
                uint64_t* out) {
  if (lines < L)
    for (int64_t kw = 0; kw < kwc; ++kw)
      for (int64_t l = lines; l < L; ++l) out[kw * L + l] = 0;
  // Full k-words (both halves inside the line) take the fast paths; the odd last word the
  // generic one.
  const int64_t full = std::clamp<int64_t>(bits.words / 2 - kw0, 0, kwc);
  if (bits.word_stride == 1) {
    // Each line's words contiguous (pack_signs along the line): 8-byte loads.
    for (int64_t l = 0; l < lines; ++l) {
      const int32_t* src = bits.p + (line0 + l) * bits.line_stride + 2 * kw0;
      for (int64_t kw = 0; kw < full; ++kw) std::memcpy(out + kw * L + l, src + 2 * kw, 8);
    }
  } else if (bits.line_stride == 1) {
    // Lines contiguous per word (pack_signs across the lines): two rows of words interleaved.
    for (int64_t kw = 0; kw < full; ++kw) {
      const uint32_t* lo = reinterpret_cast<const uint32_t*>(bits.p) +
                           2 * (kw0 + kw) * bits.word_stride + line0;
      const uint32_t* hi = lo + bits.word_stride;
      uint64_t* dst = out + kw * L;
      for (int64_t l = 0; l < lines; ++l) dst[l] = uint64_t(lo[l]) | uint64_t(hi[l]) << 32;
    }
  } else {
    for (int64_t kw = 0; kw < full; ++kw)
      for (int64_t l = 0; l < lines; ++l) out[kw * L + l] = bits.kword(line0 + l, kw0 + kw);
  }
  for (int64_t kw = full; kw < kwc; ++kw)
    for (int64_t l = 0; l < lines; ++l) out[kw * L + l] = bits.kword(line0 + l, kw0 + kw);
}

// The A operand: rows of A are lines. pack(i0, rows, kw0, kwc, out) packs an MR-row sliver.
struct BitsA {
  PackedBits bits;
  void pack(int64_t i0, int64_t rows, int64_t kw0, int64_t kwc, uint64_t* out) const {
    pack_lines<MR>(bits, i0, rows, kw0, kwc, out);
  }
};

// The B operand: columns of B are lines. pack(kw0, kwc, j0, cols, out) packs an NR-column
// sliver.
struct BitsB {
  PackedBits bits;
  void pack(int64_t kw0, int64_t kwc, int64_t j0, int64_t cols, uint64_t* out) const {
    pack_lines<NR>(bits, j0, cols, kw0, kwc, out);
  }
};

// ---- the register tile ----

typedef int32_t CountRow __attribute__((vector_size(kBitVecWords * 4)));

// counts[i * ldc + j] = (accumulate ? counts : 0) + sum over kc k-words of
// popcount(ap[k * MR + i] ^ bp[k * NR + j]), for the whole MR x NR tile.
__attribute__((noinline)) inline void micro_kernel(int64_t kc, const uint64_t* ap,
                                                   const uint64_t* bp, int32_t* counts,
                                                   int64_t ldc, bool accumulate) {
  BitVec total[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) total[i][v] = broadcast_bits(0);
  for (int64_t k0 = 0; k0 < kc; k0 += kPartialSums) {
    const int64_t k1 = std::min(kc, k0 + kPartialSums);
    BitVec part[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) part[i][v] = broadcast_bits(0);
#pragma GCC unroll 2
    for (int64_t k = k0; k < k1; ++k) {
      BitVec b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = load_bits(bp + k * NR + v * kBitVecWords);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const BitVec a = broadcast_bits(ap[k * MR + i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) part[i][v] += partial_popcount(a ^ b[v]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) total[i][v] += widen_partial(part[i][v]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      int32_t* dst = counts + i * ldc + v * kBitVecWords;
      CountRow row = __builtin_convertvector(total[i][v], CountRow);
      if (accumulate) {
        CountRow old;
        std::memcpy(&old, dst, sizeof old);
        row += old;
      }
      std::memcpy(dst, &row, sizeof row);
    }
  }
}

// ---- one product ----

// Geometry of one product: C (M, N) from K bits (kwords 64-bit words) per dot product.
struct Plan {
  int64_t M = 0, N = 0, K = 0;
  int64_t kwords() const { return ceil_div(K, 64); }
};

// Per-thread scratch of gemm_range, in uint64 words: carve it with ThreadScratch.
struct ThreadScratch {
  uint64_t* bpack;   // KC x nc_max
  uint64_t* apack;   // MC x KC
  int32_t* tile;     // MR x NR
  int32_t* block;    // mb_max x nc_max (K spanning several panels only)
};

// Blocking of a thread's range of columns and rows.
struct Blocking {
  int64_t kc_max, nc_max, mb_max;
  bool one_pass;  // K fits one KC panel: counts never leave the registers/L1 tile
  int64_t words() const {
    return kc_max * nc_max + MC * kc_max + MR * NR / 2 + (one_pass ? 0 : mb_max * nc_max / 2 + 1);
  }
};

inline Blocking blocking(const Plan& p, int64_t rows, int64_t cols) {
  Blocking b;
  b.kc_max = std::max<int64_t>(1, std::min(KC, p.kwords()));
  b.nc_max = std::min(NC, round_up(std::max<int64_t>(cols, 1), NR));
  b.one_pass = p.kwords() <= KC;
  // Row blocks of equal size (each packs B again), as few as the count block allows.
  const int64_t mb_cap = std::max<int64_t>(MR, kCountBlock / b.nc_max / MR * MR);
  const int64_t parts = b.one_pass ? 1 : ceil_div(std::max<int64_t>(rows, 1), mb_cap);
  b.mb_max = round_up(ceil_div(std::max<int64_t>(rows, 1), parts), MR);
  return b;
}

inline ThreadScratch carve(uint64_t* base, const Blocking& b) {
  ThreadScratch s;
  s.bpack = base;
  s.apack = s.bpack + b.kc_max * b.nc_max;
  s.tile = reinterpret_cast<int32_t*>(s.apack + MC * b.kc_max);
  s.block = s.tile + MR * NR;
  return s;
}

// Rows [i_begin, i_end) x columns [j_begin, j_end) of C on the calling thread. The epilogue
// gets the final counts: ep.store(counts, ldc, i0, j0, rows, cols) with
// counts[i * ldc + j] = popcount over K of (row i0 + i of A) xor (column j0 + j of B).
template <class ASource, class BSource, class Epilogue>
void gemm_range(const ASource& a, const BSource& b, const Epilogue& ep, const Plan& p,
                const Blocking& bl, const ThreadScratch& s, int64_t i_begin, int64_t i_end,
                int64_t j_begin, int64_t j_end) {
  const int64_t kwords = p.kwords();
  for (int64_t m0 = i_begin; m0 < i_end; m0 += bl.mb_max) {
    const int64_t m1 = std::min(i_end, m0 + bl.mb_max);
    for (int64_t jc = j_begin; jc < j_end; jc += bl.nc_max) {
      const int64_t nc = std::min(bl.nc_max, j_end - jc);
      const int64_t ldb = round_up(nc, NR);
      for (int64_t pc = 0; pc < std::max<int64_t>(kwords, 1); pc += KC) {
        const int64_t kc = std::min(KC, kwords - pc);
        const bool last = pc + KC >= kwords;
        for (int64_t s0 = 0; s0 < nc; s0 += NR)
          b.pack(pc, kc, jc + s0, std::min<int64_t>(NR, nc - s0), s.bpack + s0 * kc);
        for (int64_t ic = m0; ic < m1; ic += MC) {
          const int64_t mc = std::min(MC, m1 - ic);
          for (int64_t r = 0; r < mc; r += MR)
            a.pack(ic + r, std::min<int64_t>(MR, mc - r), pc, kc, s.apack + r * kc);
          for (int64_t s0 = 0; s0 < nc; s0 += NR) {
            const int64_t cols = std::min<int64_t>(NR, nc - s0);
            for (int64_t r = 0; r < mc; r += MR) {
              const int64_t rows = std::min<int64_t>(MR, mc - r);
              int32_t* counts = bl.one_pass ? s.tile : s.block + (ic - m0 + r) * ldb + s0;
              const int64_t ldc = bl.one_pass ? NR : ldb;
              micro_kernel(kc, s.apack + r * kc, s.bpack + s0 * kc, counts, ldc, pc > 0);
              if (last) ep.store(counts, ldc, ic + r, jc + s0, rows, cols);
            }
          }
        }
      }
    }
  }
}

// How C is split among threads: disjoint column ranges (each thread packs its own B panels;
// A is packed once per thread), or row ranges when C has few columns. No barrier inside.
struct Split {
  bool columns;
  int64_t tiles;
  int threads;
};

inline Split split(const Plan& p, int threads) {
  const int64_t col_tiles = ceil_div(p.N, NR), row_tiles = ceil_div(p.M, MR);
  Split s;
  s.columns = col_tiles >= 4 * threads || col_tiles >= row_tiles;
  s.tiles = s.columns ? col_tiles : row_tiles;
  s.threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, s.tiles)));
  return s;
}

// The blocking every thread of a split uses (sized for the largest share).
inline Blocking blocking(const Plan& p, const Split& sp) {
  const int64_t share = ceil_div(sp.tiles, sp.threads);
  return sp.columns ? blocking(p, p.M, share * NR) : blocking(p, share * MR, p.N);
}

// Thread t's share (t < sp.threads) of C = A B: call inside a parallel region (or serially
// for t = 0 .. threads - 1); s is that thread's scratch (Blocking::words() words).
template <class ASource, class BSource, class Epilogue>
void gemm_share(const ASource& a, const BSource& b, const Epilogue& ep, const Plan& p,
                const Split& sp, const Blocking& bl, const ThreadScratch& s, int t) {
  const int64_t t0 = sp.tiles * t / sp.threads, t1 = sp.tiles * (t + 1) / sp.threads;
  if (t0 >= t1) return;
  if (sp.columns)
    gemm_range(a, b, ep, p, bl, s, 0, p.M, t0 * NR, std::min(p.N, t1 * NR));
  else
    gemm_range(a, b, ep, p, bl, s, t0 * MR, std::min(p.M, t1 * MR), 0, p.N);
}

}  // namespace popcount_gemm
}  // namespace KK_ISA
}  // namespace kernelkit
