// The bfloat16 pair tile of the half GEMM core (AVX-512 builds; run only where the CPU has
// AVX512_BF16): A and B stay bfloat16, packed as pairs of consecutive k in 32-bit words, and a
// 6 x 64 register tile takes one vdpbf16ps (two exact products and two roundings per lane) per
// two k and 16 columns: twice the multiply-adds of the float tile's FMA, half its packed bytes.
// Traffic as the float tile: each element of A packed N / NC times, each of B once.
#pragma once

#if !defined(KK_ISA_AVX512)
#error "gemm_bf16_pairs_impl.h is for the AVX-512 build only"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "common/dtype.h"
#include "gemm/gemm_core_impl.h"

// GCC 12 reports its own AVX-512 intrinsics' undefined-vector idiom (`__Y = __Y`) as maybe
// uninitialized once they are inlined here; the values are all defined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

constexpr int kPairVecs = NR / 16;  // zmm of B per pair step: 4
// k of a panel: a KC x NR sliver of pairs (32 KiB) stays in L1. Even, so that every panel but
// the last holds whole pairs.
constexpr int64_t kPairKC = 256;
// Whether a linear layer (X W^T, rows of both along k) with m rows of X runs as C^T = W X^T
// with W read in place (linear_pairs_weight_rows): up to 1024 rows, when padding X^T's columns
// to whole slivers of NR wastes at most an eighth of the tile. Measured on Zen 4, one
// thread's share of N = K = 4096 (1 thread, CPU time): 1.12x / 1.1x / 1.1x / 1.07x the packed
// route at m = 64 / 128 / 512 / 1024, 0.87x at m = 100 (22% padding), even at m = 2048.
inline bool linear_weight_rows_route(int64_t m) {
  const int64_t padded = round_up(m, NR);
  return m <= 1024 && (padded - m) * 8 <= padded;
}

KK_INLINE uint32_t bf16_raw(const bf16_bits* p) { return p->bits; }

// The pair (p[0], p[step]) of bfloat16 values as one word, p[0] in the low half; a missing
// second value (odd k at the end of a panel) is zero.
KK_INLINE uint32_t bf16_pair(const bf16_bits* p, int64_t step, bool second) {
  return bf16_raw(p) | (second ? bf16_raw(p + step) << 16 : 0u);
}

// 16 pairs of each of the 6 rows (r[i] word m: row i's pair m) as out[m * 6 + i], 96 words:
// rows 2c and 2c + 1 interleaved into quadwords (pair m of both rows), then every output
// vector takes its quadwords from the three interleaved streams, two by one vpermt2q and the
// third by a masked vpermq.
KK_INLINE void store_pairs_6x16(const __m512i* r, uint32_t* out) {
  static_assert(MR == 6, "store_pairs_6x16 interleaves 6 rows");
  alignas(64) static constexpr uint32_t kWordsLow[16] = {0, 16, 1, 17, 2, 18, 3, 19,
                                                         4, 20, 5, 21, 6, 22, 7, 23};
  alignas(64) static constexpr uint32_t kWordsHigh[16] = {8,  24, 9,  25, 10, 26, 11, 27,
                                                          12, 28, 13, 29, 14, 30, 15, 31};
  // output vector z of a half holds the quadwords 8z .. 8z + 7 of the sequence
  // (stream 0, 1, 2 of pair 0, then of pair 1, ...): slot s is stream s % 3 of pair s / 3.
  alignas(64) static constexpr uint64_t kFirstTwo[3][8] = {
      {0, 8, 0, 1, 9, 0, 2, 10}, {0, 3, 11, 0, 4, 12, 0, 5}, {13, 0, 6, 14, 0, 7, 15, 0}};
  alignas(64) static constexpr uint64_t kThird[3][8] = {
      {0, 0, 0, 0, 0, 1, 0, 0}, {2, 0, 0, 3, 0, 0, 4, 0}, {0, 5, 0, 0, 6, 0, 0, 7}};
  static constexpr __mmask8 kThirdSlots[3] = {0x24, 0x49, 0x92};
  const __m512i low = _mm512_load_si512(kWordsLow), high = _mm512_load_si512(kWordsHigh);
  for (int half = 0; half < 2; ++half) {
    const __m512i words = half == 0 ? low : high;
    __m512i stream[3];
    for (int c = 0; c < 3; ++c) stream[c] = _mm512_permutex2var_epi32(r[2 * c], words, r[2 * c + 1]);
    for (int z = 0; z < 3; ++z) {
      const __m512i two = _mm512_permutex2var_epi64(
          stream[0], _mm512_load_si512(kFirstTwo[z]), stream[1]);
      const __m512i all = _mm512_mask_permutexvar_epi64(
          two, kThirdSlots[z], _mm512_load_si512(kThird[z]), stream[2]);
      _mm512_storeu_si512(out + 48 * half + 16 * z, all);
    }
  }
}

// A[0:rows, 0:kc] (rows <= MR) into out[kp * MR + i] = (A[i, 2 kp], A[i, 2 kp + 1]).
inline void pack_a_pairs(const bf16_bits* a, int64_t rs, int64_t cs, int64_t kc, int64_t rows,
                         uint32_t* out) {
  const int64_t steps = (kc + 1) / 2;
  int64_t kp = 0;
  if (rows == MR && cs == 1) {
    // Rows contiguous along k: a pair is a word in memory, and 16 pairs of a row one vector.
    for (; 2 * kp + 32 <= kc; kp += 16) {
      __m512i r[MR];
      for (int i = 0; i < MR; ++i) r[i] = _mm512_loadu_si512(a + i * rs + 2 * kp);
      store_pairs_6x16(r, out + kp * MR);
    }
  }
  for (; kp < steps; ++kp) {
    const bool second = 2 * kp + 1 < kc;
    for (int64_t i = 0; i < MR; ++i)
      out[kp * MR + i] = i < rows ? bf16_pair(a + i * rs + 2 * kp * cs, cs, second) : 0u;
  }
}

// r[i] word j <-> r[j] word i: unpacks within 128-bit lanes, then 128-bit lane shuffles.
KK_INLINE void transpose_words16(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// Rows contiguous: slivers s < slivers of B[0:kc, s kCols : (s + 1) kCols] into out + s * stride,
// each as pack_b_pairs lays one out; two rows of 32 values interleaved into 32 pairs by one
// vpermt2w each. Swept pair of rows by pair of rows across every sliver: a sequential stream
// per row (a sliver at a time reads one line from each of kc rows, which lie a page or more
// apart: a TLB and prefetcher miss per line; it was a fifth of the AMX product's time).
template <int kCols>
void pack_b_pairs_rows(const bf16_bits* b, int64_t rs, int64_t kc, int64_t slivers,
                       int64_t stride, uint32_t* out) {
  alignas(64) static constexpr uint16_t kLow[32] = {
      0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr uint16_t kHigh[32] = {
      16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
      24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i low = _mm512_load_si512(kLow), high = _mm512_load_si512(kHigh);
  const int64_t steps = (kc + 1) / 2;
  for (int64_t kp = 0; kp < steps; ++kp) {
    const bf16_bits* r0 = b + 2 * kp * rs;
    const bool second = 2 * kp + 1 < kc;
    for (int64_t s = 0; s < slivers; ++s)
      for (int h = 0; h < kCols / 32; ++h) {
        const int64_t j = s * kCols + 32 * h;
        const __m512i x0 = _mm512_loadu_si512(r0 + j);
        const __m512i x1 = second ? _mm512_loadu_si512(r0 + rs + j) : _mm512_setzero_si512();
        uint32_t* o = out + s * stride + kp * kCols + 32 * h;
        _mm512_storeu_si512(o, _mm512_permutex2var_epi16(x0, low, x1));
        _mm512_storeu_si512(o + 16, _mm512_permutex2var_epi16(x0, high, x1));
      }
  }
}

// B[0:kc, 0:cols] (cols <= kCols, a multiple of 32) into out[kp * kCols + j] = (B[2 kp, j],
// B[2 kp + 1, j]).
template <int kCols = NR>
void pack_b_pairs(const bf16_bits* b, int64_t rs, int64_t cs, int64_t kc, int64_t cols,
                         uint32_t* out) {
  const int64_t steps = (kc + 1) / 2;
  if (cols == kCols && cs == 1) return pack_b_pairs_rows<kCols>(b, rs, kc, 1, 0, out);
  int64_t kp = 0;
  if (cols == kCols && rs == 1) {
    // Columns contiguous along k (a weight used transposed): each column's pairs are words in
    // memory, so 16 pairs of 16 columns are one 16 x 16 word transpose.
    for (; 2 * kp + 32 <= kc; kp += 16) {
      for (int64_t j0 = 0; j0 < kCols; j0 += 16) {
        __m512i r[16];
        for (int j = 0; j < 16; ++j) {
          const bf16_bits* column = b + (j0 + j) * cs + 2 * kp;
          r[j] = _mm512_loadu_si512(column);
          // The same line of the next panel, into L2: packed next when one row block covers
          // the rows (gemm_serial); 64 columns are too many streams for the hardware
          // prefetchers. (A prefetch never faults: the one past the last panel is harmless.)
          _mm_prefetch(reinterpret_cast<const char*>(column + kPairKC), _MM_HINT_T1);
        }
        transpose_words16(r);
        for (int q = 0; q < 16; ++q) _mm512_storeu_si512(out + (kp + q) * kCols + j0, r[q]);
      }
    }
  }
  // The rest, or any strides: a pair per column.
  for (; kp < steps; ++kp) {
    const bool second = 2 * kp + 1 < kc;
    for (int64_t j = 0; j < kCols; ++j)
      out[kp * kCols + j] = j < cols ? bf16_pair(b + 2 * kp * rs + j * cs, rs, second) : 0u;
  }
}

// A panel of bfloat16 pairs: the whole slivers swept by rows when rows are contiguous, the rest
// (a partial last sliver, other strides) sliver by sliver through src.pack.
template <int kCols, class Source>
void pack_panel_by_rows(const Source& src, const bf16_bits* b, int64_t rs, int64_t cs,
                        int64_t k0, int64_t kc, int64_t j0, int64_t cols, int64_t stride,
                        uint32_t* out) {
  int64_t s = 0;
  if (cs == 1) {
    s = cols / kCols;
    pack_b_pairs_rows<kCols>(b, rs, kc, s, stride, out);
  }
  for (; s * kCols < cols; ++s)
    src.pack(k0, kc, j0 + s * kCols, std::min<int64_t>(kCols, cols - s * kCols), out + s * stride);
}

template <class T> struct DensePairsA {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, uint32_t* out) const {
    pack_a_pairs(p + i0 * rs + k0 * cs, rs, cs, kc, rows, out);
  }
};

template <class T> struct DensePairsB {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, uint32_t* out) const {
    pack_b_pairs(p + k0 * rs + j0 * cs, rs, cs, kc, cols, out);
  }
  // The panel's slivers of NR columns (sliver s at out + s * stride), as pack per sliver.
  void pack_panel(int64_t k0, int64_t kc, int64_t j0, int64_t cols, int64_t stride,
                  uint32_t* out) const {
    pack_panel_by_rows<NR>(*this, p + k0 * rs + j0 * cs, rs, cs, k0, kc, j0, cols, stride, out);
  }
};

// Where the tile's MR broadcast pairs of a step come from: a packed sliver (MR words per step)
// or MR rows of a matrix whose rows run along k, read where they lie (a word per pair).
struct PackedPairs {
  const uint32_t* p;
  KK_INLINE uint32_t at(int i) const { return p[i]; }
  KK_INLINE void next() { p += MR; }
};
struct RowPairs {
  const bf16_bits* p;
  int64_t ld;  // elements between rows
  KK_INLINE uint32_t at(int i) const {
    uint32_t word;
    std::memcpy(&word, p + i * ld, sizeof word);
    return word;
  }
  KK_INLINE void next() { p += 2; }
};

// c[0:MR, 0:NR] = (accumulate ? c : 0) + the pair products over (kc + 1) / 2 pair steps.
template <class APairs>
__attribute__((noinline, target("avx512bf16"))) void micro_kernel_bf16_pairs(
    int64_t kc, APairs ap, const uint32_t* bp, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[MR][kPairVecs];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kPairVecs; ++v) acc[i][v] = _mm512_setzero_ps();
  // The sums this tile adds to come from a block of C mostly out of L1 (5 MiB per thread):
  // asked for now, they arrive while the pairs are multiplied.
  if (accumulate)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < kPairVecs; ++v) prefetch_span(c + i * ldc + 16 * v, 1);
  const int64_t steps = (kc + 1) / 2;
#pragma GCC unroll 2
  for (int64_t kp = 0; kp < steps; ++kp) {
    __m512bh b[kPairVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kPairVecs; ++v) b[v] = __m512bh(_mm512_loadu_si512(bp + 16 * v));
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m512bh a = __m512bh(_mm512_set1_epi32(int(ap.at(i))));
#pragma GCC unroll 4
      for (int v = 0; v < kPairVecs; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], a, b[v]);
    }
    ap.next();
    bp += NR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kPairVecs; ++v) {
      __m512 sum = acc[i][v];
      if (accumulate) sum = _mm512_add_ps(sum, _mm512_loadu_ps(row + 16 * v));
      _mm512_storeu_ps(row + 16 * v, sum);
    }
  }
}

struct Bf16PairTile {
  using Packed = uint32_t;
  static constexpr int kMR = MR, kNR = NR;
  static constexpr int64_t kKC = kPairKC;
  static constexpr int64_t kNC = NC, kMC = MC;
  static constexpr int64_t kStretchBytes = FloatTile::kStretchBytes;
  static int64_t steps(int64_t kc) { return (kc + 1) / 2; }
  static void begin() {}
  static void end() {}
  static void micro(int64_t kc, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc,
                    bool accumulate) {
    micro_kernel_bf16_pairs(kc, PackedPairs{ap}, bp, c, ldc, accumulate);
  }
};

// C[i, j] = acc[j * ldc + i] + bias (i, j) for j < rows, i < cols. With C's rows contiguous,
// 16 x 16 blocks turned by word transposes write 16 values of a row of C at a time (a row of
// acc stored as a column of C touches a page per value).
template <class TO>
void store_transposed(const float* acc, int64_t ldc, int64_t rows, int64_t cols,
                      const Bias& bias, TO* c, int64_t c_rs, int64_t c_cs) {
  int64_t j0 = 0;
  if (c_cs == 1 && (bias.p == nullptr || bias.cs <= 1)) {
    for (; j0 + 16 <= rows; j0 += 16) {
      int64_t i0 = 0;
      for (; i0 + 16 <= cols; i0 += 16) {
        __m512i r[16];
        for (int q = 0; q < 16; ++q)
          r[q] = _mm512_castps_si512(_mm512_loadu_ps(acc + (j0 + q) * ldc + i0));
        transpose_words16(r);
        for (int q = 0; q < 16; ++q) {
          __m512 v = _mm512_castsi512_ps(r[q]);
          const Bias b = bias.at(i0 + q, j0);
          if (b.p != nullptr)
            v = _mm512_add_ps(v, b.cs == 1 ? _mm512_loadu_ps(b.p) : _mm512_set1_ps(b.p[0]));
          TO* row = c + (i0 + q) * c_rs + j0;
          store_vec_checked(row, vf8(_mm512_castps512_ps256(v)));
          store_vec_checked(row + 8, vf8(_mm512_extractf32x8_ps(v, 1)));
        }
      }
      for (int64_t i = i0; i < cols; ++i)
        for (int64_t j = j0; j < j0 + 16; ++j)
          c[i * c_rs + j] = StoreAs<TO>::from(acc[j * ldc + i] + bias.at(i, j).in_row(0));
    }
  }
  const Bias bias_t = bias.transposed();
  for (int64_t j = j0; j < rows; ++j)
    store_row(acc + j * ldc, bias_t.at(j, 0), cols, c + j * c_cs, c_rs, false);
}

// C = X W^T (+ bias) for X (M x K) and W (N x K) whose rows both run along k, K even (a linear
// layer): as C^T = W X^T, W's rows are the tile's broadcasts, read where they lie (no packing of
// the large operand: transposing W into pair slivers was a fifth of the time at M = 64), and
// X^T, the small one, is packed per panel (in L2: 512 x 256 pairs is 256 KiB). Per tile of 6
// rows of W (3 KiB of a panel, in L1 across the slivers) every sliver of X^T in turn, streamed
// from L2. Threads take disjoint ranges of W's rows. Traffic: W read once from memory, X once
// per thread, the float32 sums once per panel.
template <class TO>
void linear_pairs_rows_serial(const bf16_bits* x, int64_t x_rs, const bf16_bits* w,
                              int64_t w_rs, TO* c, int64_t c_rs, int64_t c_cs,
                              const Bias& bias, int64_t M, int64_t K, int64_t n_begin,
                              int64_t n_end) {
  constexpr int64_t TK = kPairKC, TM = MC / MR * MR;
  const int64_t ldc = round_up(M, NR), slivers = ldc / NR;
  const int64_t rows_cap = std::max<int64_t>(TM, kAccumulatorFloats / ldc / TM * TM);
  float* acc = thread_buffer<float, kSlotAccumulator>(rows_cap * ldc);
  uint32_t* xpack = thread_buffer<uint32_t, kSlotPackedB>(TK / 2 * ldc);
  uint32_t* edge = thread_buffer<uint32_t, kSlotPackedA>(TK / 2 * MR);
  const DensePairsB<bf16_bits> xt{x, 1, x_rs};  // X^T: (K x M), columns along k
  for (int64_t n0 = n_begin; n0 < n_end; n0 += rows_cap) {
    const int64_t nb = std::min(rows_cap, n_end - n0);
    for (int64_t p0 = 0; p0 < K; p0 += TK) {
      const int64_t kc = std::min(TK, K - p0), steps = kc / 2;
      pack_panel<NR>(xt, p0, kc, 0, M, steps * NR, xpack);
      for (int64_t i0 = 0; i0 < nb; i0 += TM) {
        const int64_t mc = std::min(TM, nb - i0);
        const bf16_bits* block = w + (n0 + i0) * w_rs + p0;
        // The part of W the next block uses (this panel's next rows, else the next panel's
        // first), asked for a tile at a time while this block's first sliver runs: its rows
        // are far apart, no stream for the hardware prefetchers.
        const bool last = i0 + TM >= nb;
        const bf16_bits* ahead = last ? w + n0 * w_rs + p0 + TK : block + TM * w_rs;
        const int64_t ahead_rows = !last ? std::min(TM, nb - i0 - TM)
                                   : p0 + TK < K ? std::min(TM, nb) : 0;
        const int64_t ahead_k = std::min(TK, K - p0 - (last ? TK : 0));
        int64_t r = 0;
        for (; r + MR <= mc; r += MR) {
          for (int64_t q = r; q < std::min(r + MR, ahead_rows); ++q)
            prefetch_span(ahead + q * w_rs, ahead_k);
          for (int64_t s = 0; s < slivers; ++s)
            micro_kernel_bf16_pairs(kc, RowPairs{block + r * w_rs, w_rs},
                                    xpack + s * steps * NR, acc + (i0 + r) * ldc + s * NR, ldc,
                                    p0 > 0);
        }
        if (r < mc) {
          pack_a_pairs(block + r * w_rs, w_rs, 1, kc, mc - r, edge);
          for (int64_t s = 0; s < slivers; ++s)
            micro_kernel_bf16_pairs(kc, PackedPairs{edge}, xpack + s * steps * NR,
                                    acc + (i0 + r) * ldc + s * NR, ldc, p0 > 0);
        }
      }
    }
    store_transposed(acc, ldc, nb, M, bias.at(0, n0), c + n0 * c_cs, c_rs, c_cs);
  }
}

template <class TO>
void linear_pairs_weight_rows(const bf16_bits* x, int64_t x_rs, const bf16_bits* w,
                              int64_t w_rs, TO* c, int64_t c_rs, int64_t c_cs,
                              const Bias& bias, int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t tiles = (N + MR - 1) / MR;
  threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, tiles)));
  if (threads == 1)
    return linear_pairs_rows_serial(x, x_rs, w, w_rs, c, c_rs, c_cs, bias, M, K, 0, N);
  parallel_region(threads, [&] {
    const int64_t t = omp_thread_index();
    const int64_t n0 = tiles * t / threads * MR, n1 = std::min(N, tiles * (t + 1) / threads * MR);
    linear_pairs_rows_serial(x, x_rs, w, w_rs, c, c_rs, c_cs, bias, M, K, n0, n1);
  });
}

// The compute floor of the pair tile: kAcc accumulators += vdpbf16ps(x_i, y), y reloaded from
// memory every step. Returns the flops done (4 per lane: two products, two sums).
__attribute__((noinline, target("avx512bf16"))) inline double bf16_pairs_loop(
    int64_t steps, const uint32_t* seeds, uint64_t* sink) {
  constexpr int kAcc = 12;
  __m512bh x[kAcc];
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) {
    x[i] = __m512bh(_mm512_set1_epi32(int(seeds[i % 4])));
    acc[i] = _mm512_setzero_ps();
  }
  for (int64_t s = 0; s < steps; ++s) {
    const __m512bh y = __m512bh(_mm512_loadu_si512(seeds + 16 * (s & 1)));
#pragma GCC unroll 12
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x[i], y);
  }
  __m512 all = acc[0];
  for (int i = 1; i < kAcc; ++i) all = _mm512_add_ps(all, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, all);
  float total = 0;
  for (float v : lanes) total += v;
  *sink ^= uint64_t(total != 0.0f);
  return double(steps) * kAcc * 16 * 4;
}

}  // namespace half_gemm_detail
}  // namespace KK_ISA
}  // namespace kernelkit

#pragma GCC diagnostic pop
