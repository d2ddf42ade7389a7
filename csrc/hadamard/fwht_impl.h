// FWHT kernels, written once over vec.h's vectors and compiled once per ISA (fwht.cpp,
// fwht_avx2.cpp, and fwht_avx512.cpp on 512-bit vectors). A row costs one read of src and one write of dst: the first pass does the 3
// in-register levels + 3 across registers, later passes 4 (3 at 4 KiB strides) on the row held
// in L1 (rows > 32 KiB: L1 blocks, then the levels across blocks in L2). Rows beyond L2 are cut
// into 2**15..2**17-element chunks, then one streaming or strip-buffered pass joins them: two
// reads and two writes of the row in all. Halves compute in float; bfloat16 rows travel as
// even/odd halves of 32-bit words (see kPairedLoad) so that neither conversion shuffles.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/parallel.h"
#include "common/scratch.h"
#include "common/vec.h"
#include "hadamard/fwht.h"

namespace kernelkit {
namespace KK_ISA {
namespace fwht_detail {

// Rows up to this many bytes of compute type are transformed whole (they stay in L2).
constexpr int64_t kRowBytes = int64_t(1) << 17;

// Butterfly levels per pass after the first: 2**4 = 16 vector registers, all AVX2 has. Rows a
// multiple of 4 KiB apart share one L1 set (12 ways here): 16 of them would evict each other
// between the two halves of every line, so such passes take 8 rows (3 levels).
constexpr int levels_per_pass(int64_t row_distance_bytes) {
  return row_distance_bytes % 4096 == 0 ? 3 : 4;
}

inline int log2_exact(int64_t n) {
  int k = 0;
  while ((int64_t(1) << k) < n) ++k;
  return k;
}

// Levels at register distance 1, 2, .., D_END/2 across G registers. Forced inline (as are the
// small helpers the passes call): an out-of-line call would send the registers to the stack.
template <int G, int D_END, class V> KK_INLINE void butterfly_levels(V* r) {
#pragma GCC unroll 16
  for (int d = 1; d < D_END; d *= 2) {
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      if (j & d) continue;
      const V a = r[j], b = r[j + d];
      r[j] = a + b;
      r[j + d] = a - b;
    }
  }
}

// log2(G) butterfly levels across G registers, the results multiplied by sv when `scaled`:
// the last level then computes s*a +- s*b as two FMAs on s*b (3 operations, not 4).
template <int G, class V> KK_INLINE void butterfly_registers(V* r, bool scaled, V sv) {
  if (!scaled) return butterfly_levels<G, G>(r);
  if constexpr (G == 1) {
    r[0] *= sv;
  } else {
    butterfly_levels<G, G / 2>(r);
#pragma GCC unroll 16
    for (int j = 0; j < G / 2; ++j) {
      const V bs = r[j + G / 2] * sv;
      const V a = r[j];
      r[j] = a * sv + bs;
      r[j + G / 2] = a * sv - bs;
    }
  }
}

// bfloat16 rows are loaded in pairs of vectors (even- and odd-indexed values, see
// load_even): the first pass then leaves each 2W results in the order 0, 2, .., 1, 3, .. (W
// lanes per vector: 16 values per pair on AVX2, 32 on AVX-512).
// Later passes act on higher index bits and do not care; the last one (store_pair, in a
// first pass or fixed_cross_pass_pairs) or convert_pairs restores the order while it rounds
// to bfloat16. This keeps both conversions off the shuffle port.
template <class In> constexpr bool kPairedLoad = std::is_same<In, bf16_bits>::value;
template <class Out> constexpr bool kPairedStore = std::is_same<Out, bf16_bits>::value;

// First pass of a contiguous row (len a multiple of W * G): the in-register levels of each
// vector, then log2(G) levels across G consecutive vectors.
// With DEFER_EO (bfloat16 rows whose last pass is fixed_cross_pass_pairs), the level between
// each 2W values' even and odd halves is left to that last pass: the halves are then
// independent here, and each is done with G/2 registers (no spills at G = 16).
template <class S, int G, bool DEFER_EO = false, class In, class Out>
void first_pass(const In* src, Out* dst, int64_t len, S scale, bool scaled) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const V sv = Vec<S>::broadcast(scale);
  if constexpr (DEFER_EO) {
    static_assert(kPairedLoad<In> && G >= 4, "deferring needs paired loads");
    for (int64_t i = 0; i < len; i += int64_t(W) * G) {
      for (int half = 0; half < 2; ++half) {
        V r[G / 2];
        for (int k = 0; k < G / 2; ++k)
          r[k] = Vec<S>::butterflies(half ? load_odd(src + i + 2 * k * W)
                                          : load_even(src + i + 2 * k * W));
        butterfly_registers<G / 2>(r, scaled, sv);
        for (int k = 0; k < G / 2; ++k) store_vec(dst + i + (2 * k + half) * W, r[k]);
      }
    }
    return;
  }
  for (int64_t i = 0; i < len; i += int64_t(W) * G) {
    V r[G];
    if constexpr (kPairedLoad<In> && G >= 2) {
      for (int j = 0; j < G; j += 2) {
        r[j] = load_even(src + i + j * W);
        r[j + 1] = load_odd(src + i + j * W);
      }
      for (int j = 0; j < G; ++j) r[j] = Vec<S>::butterflies(r[j]);
    } else {
      for (int j = 0; j < G; ++j) r[j] = Vec<S>::butterflies(load_as<S>(src + i + j * W));
    }
    butterfly_registers<G>(r, scaled, sv);
    if constexpr (kPairedStore<Out> && G >= 2) {
      for (int j = 0; j < G; j += 2) store_pair(dst + i + j * W, r[j], r[j + 1]);
    } else {
      for (int j = 0; j < G; ++j) store_vec(dst + i + j * W, r[j]);
    }
  }
}

// log2(G) butterfly levels among rows r, r + dist, ..., r + (G-1) dist of a rows x width
// matrix (width a multiple of W), for every such group: one read and one write per element.
template <class S, int G, class In, class Out>
void cross_pass(const In* src, int64_t src_ld, Out* dst, int64_t dst_ld, int64_t rows,
                int64_t width, int64_t dist, S scale, bool scaled) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const V sv = Vec<S>::broadcast(scale);
  for (int64_t block = 0; block < rows; block += dist * G) {
    for (int64_t o = 0; o < dist; ++o) {
      const In* s = src + (block + o) * src_ld;
      Out* d = dst + (block + o) * dst_ld;
      for (int64_t c = 0; c < width; c += W) {
        V r[G];
        for (int j = 0; j < G; ++j) r[j] = load_as<S>(s + j * dist * src_ld + c);
        butterfly_registers<G>(r, scaled, sv);
        for (int j = 0; j < G; ++j) store_vec(d + j * dist * dst_ld + c, r[j]);
      }
    }
  }
}

template <class S, class In, class Out>
void cross_pass_dispatch(int nlev, const In* src, int64_t src_ld, Out* dst, int64_t dst_ld,
                         int64_t rows, int64_t width, int64_t dist, S scale, bool scaled) {
  switch (nlev) {
    case 0: return cross_pass<S, 1>(src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    case 1: return cross_pass<S, 2>(src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    case 2: return cross_pass<S, 4>(src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    case 3: return cross_pass<S, 8>(src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    default: return cross_pass<S, 16>(src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
  }
}

// The full transform down the columns of a rows x width matrix (rows = 2**r), in passes of at
// most four levels: src -> work for the first, work -> work in between, work -> dst (scaled)
// for the last. work may alias src or dst when their layouts match.
template <class S, class In, class Out>
void column_transform(const In* src, int64_t src_ld, S* work, int64_t work_ld, Out* dst,
                      int64_t dst_ld, int64_t rows, int64_t width, S scale) {
  const int levels = log2_exact(rows);
  const int per_pass = std::min(levels_per_pass(src_ld * int64_t(sizeof(In))),
                                levels_per_pass(dst_ld * int64_t(sizeof(Out))));
  const int passes = std::max(1, (levels + per_pass - 1) / per_pass);
  const bool scaled = scale != S(1);
  int64_t dist = 1;
  for (int p = 0; p < passes; ++p) {
    const int nlev = levels / passes + (p < levels % passes ? 1 : 0);
    const bool first = p == 0, last = p == passes - 1;
    if (first && last)
      cross_pass_dispatch<S>(nlev, src, src_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    else if (first)
      cross_pass_dispatch<S>(nlev, src, src_ld, work, work_ld, rows, width, dist, S(1), false);
    else if (last)
      cross_pass_dispatch<S>(nlev, work, work_ld, dst, dst_ld, rows, width, dist, scale, scaled);
    else
      cross_pass_dispatch<S>(nlev, work, work_ld, work, work_ld, rows, width, dist, S(1), false);
    dist <<= nlev;
  }
}

// Rows shorter than one vector (n < 8 or 16 floats, 4 or 8 doubles).
template <class S, class In, class Out>
void short_row_transform(const In* src, Out* dst, int64_t len, S scale) {
  S t[16];
  for (int64_t i = 0; i < len; ++i) t[i] = to_compute<S>(src[i]);
  for (int64_t h = 1; h < len; h *= 2)
    for (int64_t i = 0; i < len; ++i)
      if (!(i & h)) {
        const S a = t[i], b = t[i + h];
        t[i] = a + b;
        t[i + h] = a - b;
      }
  for (int64_t i = 0; i < len; ++i) dst[i] = StoreAs<Out>::from(t[i] * scale);
}

// log2(G) butterfly levels among vectors STRIDE elements apart, for every group of G in a
// contiguous row of LEN elements. Strides are compile-time constants, so every load and store
// is one base register plus a displacement (no per-row pointer set to keep in registers).
// Only the columns [c0, c1) of each block are done (a slice of the work, for threads).
template <class S, int G, int64_t STRIDE, int64_t LEN, class In, class Out>
void fixed_cross_pass(const In* src, Out* dst, S scale, bool scaled, int64_t c0 = 0,
                      int64_t c1 = STRIDE) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const V sv = Vec<S>::broadcast(scale);
  for (int64_t b = 0; b < LEN; b += G * STRIDE) {
    for (int64_t c = b + c0; c < b + c1; c += W) {
      V r[G];
      for (int j = 0; j < G; ++j) r[j] = load_as<S>(src + c + j * STRIDE);
      butterfly_registers<G>(r, scaled, sv);
      for (int j = 0; j < G; ++j) store_vec(dst + c + j * STRIDE, r[j]);
    }
  }
}

// The last pass of a bfloat16 row: as fixed_cross_pass, for the two columns of each 2W
// values (their even and odd halves), storing bfloat16 pairs directly. The even half is done
// first and its rounded words parked in work (scratch by now), then the odd half joins them:
// 8 vectors live at a time instead of 16, so nothing spills.
// With EO, it also does the even/odd level a DEFER_EO first pass left (on the parked floats).
template <class S, int G, int64_t STRIDE, int64_t LEN, bool EO = false>
void fixed_cross_pass_pairs(S* work, bf16_bits* dst, S scale, bool scaled) {
  using V = VecT<S>;
  using VU = decltype(bf16_round_high(V{}));  // the vector's 32-bit words
  constexpr int W = Vec<S>::W;
  static_assert(STRIDE % (2 * W) == 0, "pairs need columns of two vectors");
  const V sv = Vec<S>::broadcast(scale);
  for (int64_t b = 0; b < LEN; b += G * STRIDE) {
    for (int64_t c = b; c < b + STRIDE; c += 2 * W) {
      V r[G];
      for (int j = 0; j < G; ++j) r[j] = load_as<S>(work + c + j * STRIDE);
      butterfly_registers<G>(r, scaled, sv);
      for (int j = 0; j < G; ++j) {
        if constexpr (EO) {
          store_vec(work + c + j * STRIDE, r[j]);
        } else {
          const VU even = bf16_round_high(r[j]) >> 16;
          std::memcpy(work + c + j * STRIDE, &even, sizeof even);
        }
      }
      for (int j = 0; j < G; ++j) r[j] = load_as<S>(work + c + W + j * STRIDE);
      butterfly_registers<G>(r, scaled, sv);
      for (int j = 0; j < G; ++j) {
        VU even;
        V odd = r[j];
        if constexpr (EO) {
          const V e = load_as<S>(work + c + j * STRIDE);
          const V sum = e + odd;
          odd = e - odd;
          even = bf16_round_high(sum) >> 16;
        } else {
          std::memcpy(&even, work + c + j * STRIDE, sizeof even);
        }
        const VU pair = even | (bf16_round_high(odd) & 0xffff0000u);
        std::memcpy(dst + c + j * STRIDE, &pair, sizeof pair);
      }
    }
  }
}

// The levels [LO, LOGN) of a row, as few passes as levels_per_pass allows; the last writes dst.
template <class S, int LOGN, int LO, bool EO = false, class Out>
void fixed_later_passes(S* work, Out* dst, S scale, bool scaled) {
  constexpr int remaining = LOGN - LO;
  // bfloat16 rows end with a two-column pass: 2 * 2**3 registers at most.
  constexpr int64_t stride = int64_t(1) << LO, len = int64_t(1) << LOGN;
  constexpr int per_pass =
      kPairedStore<Out> ? 3 : levels_per_pass(stride * int64_t(sizeof(S)));
  constexpr int passes = (remaining + per_pass - 1) / per_pass;
  constexpr int nlev = (remaining + passes - 1) / passes;
  if constexpr (nlev == remaining && kPairedStore<Out>) {
    fixed_cross_pass_pairs<S, (1 << nlev), stride, len, EO>(work, dst, scale, scaled);
  } else if constexpr (nlev == remaining) {
    fixed_cross_pass<S, (1 << nlev), stride, len>(work, dst, scale, scaled);
  } else {
    fixed_cross_pass<S, (1 << nlev), (int64_t(1) << LO), (int64_t(1) << LOGN)>(work, work, S(1),
                                                                              false);
    fixed_later_passes<S, LOGN, LO + nlev, EO>(work, dst, scale, scaled);
  }
}

// Rows up to 32 KiB are transformed in L1, pass after pass.
template <class S> constexpr int kL1Log = sizeof(S) == 4 ? 13 : 12;

// A contiguous row of 2**LOGN >= W elements: the first pass (in-register levels + up to 3
// more) reads src, later passes run on work (dst itself when Out == S), the last writes dst.
// A row larger than L1 is done as L1-sized blocks first, then the levels across blocks.
template <class S, int LOGN, class In, class Out>
void fixed_row_transform(const In* src, Out* dst, S* work, S scale) {
  constexpr int LW = Vec<S>::LOG_W;
  // bfloat16 rows take 4 levels across registers in the first pass, so that 3 are left for
  // the two-column last pass at n = 1024.
  constexpr int g_max = kPairedStore<Out> ? 4 : 3;
  constexpr int g = LOGN - LW < g_max ? LOGN - LW : g_max;
  constexpr int64_t len = int64_t(1) << LOGN;
  const bool scaled = scale != S(1);
  if constexpr (LOGN > kL1Log<S>) {
    constexpr int64_t block = int64_t(1) << kL1Log<S>;
    for (int64_t b = 0; b < len; b += block)
      fixed_row_transform<S, kL1Log<S>>(src + b, work + b, work + b, S(1));
    fixed_later_passes<S, LOGN, kL1Log<S>>(work, dst, scale, scaled);
  } else if constexpr (LW + g == LOGN) {
    first_pass<S, (1 << g)>(src, dst, len, scale, scaled);
  } else {
    // A bfloat16 row ending in a pairs pass defers the even/odd level to it (see first_pass).
    constexpr bool defer = kPairedStore<Out> && g >= 2;
    first_pass<S, (1 << g), defer>(src, work, len, S(1), false);
    fixed_later_passes<S, LOGN, LW + g, defer>(work, dst, scale, scaled);
  }
}

// One contiguous row of len = 2**L <= W * 2**14 elements (long rows are cut into chunks no
// longer). work holds len compute values (it is dst itself when Out == S).
template <class S, class In, class Out>
void row_transform(const In* src, Out* dst, S* work, int64_t len, S scale) {
  constexpr int LW = Vec<S>::LOG_W;
  if (len < Vec<S>::W) return short_row_transform<S>(src, dst, len, scale);
  switch (log2_exact(len) - LW) {
    case 0: return fixed_row_transform<S, LW + 0>(src, dst, work, scale);
    case 1: return fixed_row_transform<S, LW + 1>(src, dst, work, scale);
    case 2: return fixed_row_transform<S, LW + 2>(src, dst, work, scale);
    case 3: return fixed_row_transform<S, LW + 3>(src, dst, work, scale);
    case 4: return fixed_row_transform<S, LW + 4>(src, dst, work, scale);
    case 5: return fixed_row_transform<S, LW + 5>(src, dst, work, scale);
    case 6: return fixed_row_transform<S, LW + 6>(src, dst, work, scale);
    case 7: return fixed_row_transform<S, LW + 7>(src, dst, work, scale);
    case 8: return fixed_row_transform<S, LW + 8>(src, dst, work, scale);
    case 9: return fixed_row_transform<S, LW + 9>(src, dst, work, scale);
    case 10: return fixed_row_transform<S, LW + 10>(src, dst, work, scale);
    case 11: return fixed_row_transform<S, LW + 11>(src, dst, work, scale);
    case 12: return fixed_row_transform<S, LW + 12>(src, dst, work, scale);
    case 13: return fixed_row_transform<S, LW + 13>(src, dst, work, scale);
    default: return fixed_row_transform<S, LW + 14>(src, dst, work, scale);
  }
}

// A small GEMM tile: 4 outputs a0..a0+3 for NV vectors of columns at c, summed over the m
// inputs: 4 * NV accumulators, each input vector loaded once for 4 FMAs.
template <class S, int NV>
inline void small_matrix_tile(const S* x, S* out, int m, int64_t width, const S* h, int a0,
                              int64_t c) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  V acc[4][NV] = {};
  for (int b = 0; b < m; ++b) {
    V in[NV];
    for (int v = 0; v < NV; ++v) in[v] = load_as<S>(x + b * width + c + v * W);
    for (int k = 0; k < 4; ++k) {
      const V hk = Vec<S>::broadcast(h[(a0 + k) * m + b]);
      for (int v = 0; v < NV; ++v) acc[k][v] += in[v] * hk;
    }
  }
  for (int k = 0; k < 4; ++k)
    for (int v = 0; v < NV; ++v) store_vec(out + k * NV * W + v * W, acc[k][v]);
}

// y[a] = sum_b (scale * H[a, b]) x[b] for the m blocks of width `width` of one row, columns
// [c0, c1). x may alias dst: each column chunk's m outputs go to a small buffer first, and to
// dst once all m inputs of the chunk are read. (m is 12, 20, 28 or 40: a multiple of 4.)
template <class S, class Out>
void small_matrix_pass(const S* x, Out* dst, int m, int64_t width, const S* h_scaled,
                       int64_t c0, int64_t c1) {
  constexpr int W = Vec<S>::W;
  constexpr int NV = 2;
  S out[40 * NV * W];
  int64_t c = c0;
  if (width % (NV * W) == 0) {
    for (; c < c1; c += NV * W) {
      for (int a = 0; a < m; a += 4)
        small_matrix_tile<S, NV>(x, out + a * NV * W, m, width, h_scaled, a, c);
      for (int a = 0; a < m; ++a)
        for (int v = 0; v < NV; ++v)
          store_vec(dst + a * width + c + v * W, load_as<S>(out + (a * NV + v) * W));
    }
  }
  for (; c < c1; ++c) {
    S in[40];
    for (int b = 0; b < m; ++b) in[b] = x[b * width + c];
    for (int a = 0; a < m; ++a) {
      S acc = 0;
      for (int b = 0; b < m; ++b) acc += in[b] * h_scaled[a * m + b];
      dst[a * width + c] = StoreAs<Out>::from(acc);
    }
  }
}

// Rows up to kRowLimit elements (128 KiB) are transformed by one thread each; a lone row up
// to kChunkMax (512 KiB, still in L2) too when there are rows enough for every thread.
template <class S> constexpr int64_t kRowLimit = kRowBytes / int64_t(sizeof(S));
template <class S> constexpr int64_t kChunkMax = 4 * kRowLimit<S>;

// The R <= 8 levels across the chunks of a long row (len = R * C, C in [kRowLimit, kChunkMax])
// in one streaming pass over the columns [c0, c1) of every chunk, with compile-time strides.
// (16 streams C apart would fight over the 12 ways of an L1 set; longer rows use strips.)
template <class S, int64_t C, class Out>
void chunk_levels_fixed(int64_t R, const S* work, Out* dst, S scale, int64_t c0, int64_t c1) {
  const bool scaled = scale != S(1);
  switch (R) {
    case 2: return fixed_cross_pass<S, 2, C, 2 * C>(work, dst, scale, scaled, c0, c1);
    case 4: return fixed_cross_pass<S, 4, C, 4 * C>(work, dst, scale, scaled, c0, c1);
    default: return fixed_cross_pass<S, 8, C, 8 * C>(work, dst, scale, scaled, c0, c1);
  }
}

template <class S, class Out>
void chunk_levels(int64_t C, int64_t R, const S* work, Out* dst, S scale, int64_t c0, int64_t c1) {
  constexpr int64_t L = kRowLimit<S>;
  if (C == L) return chunk_levels_fixed<S, L>(R, work, dst, scale, c0, c1);
  if (C == 2 * L) return chunk_levels_fixed<S, 2 * L>(R, work, dst, scale, c0, c1);
  return chunk_levels_fixed<S, 4 * L>(R, work, dst, scale, c0, c1);
}

// A row too long for one thread's L2: R chunks of C elements transformed in parallel (in L1
// blocks), then the log2(R) levels across chunks: one streaming pass when R <= 8, else down
// strips of kStripElems columns copied through a small buffer (two reads and two writes of the
// row in all). The sizes are the fastest measured here for 2**18 .. 2**24 floats.
constexpr int64_t kStripElems = 512;

template <class S, class In, class Out>
void long_row_transform(const In* src, Out* dst, S* work, int64_t len, S scale, int threads) {
  const int64_t C = std::min(std::max(len / 8, kRowLimit<S>), kChunkMax<S>);
  const int64_t R = len / C;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < R; ++r)
    errors.run([&] { row_transform<S>(src + r * C, work + r * C, work + r * C, C, S(1)); });
  errors.rethrow();

  const int64_t strip = R <= 8 ? C / (4 * int64_t(threads)) : kStripElems;
  const int64_t strips = C / strip;
#pragma omp parallel num_threads(threads)
  {
    // The buffer's rows are padded by one vector so that they do not all share an L1 set.
    const int64_t ld = strip + Vec<S>::W;
    Scratch<S, 0> buf;
    S* b = nullptr;
    errors.run([&] { b = R > 8 ? buf.get(R * ld) : nullptr; });
#pragma omp for schedule(static)
    for (int64_t s = 0; s < strips; ++s) errors.run([&] {
      if (R <= 8)
        chunk_levels<S>(C, R, work, dst, scale, s * strip, (s + 1) * strip);
      else
        column_transform<S>(work + s * strip, C, b, ld, dst + s * strip, C, R, strip, scale);
    });
  }
  errors.rethrow();
}

// The float results of a bfloat16 row (paired order when its blocks had >= 2W values) to dst.
template <class S>
void convert_pairs(const S* work, bf16_bits* dst, int64_t n, bool paired) {
  constexpr int W = Vec<S>::W;
  int64_t i = 0;
  if (paired)
    for (; i < n; i += 2 * W) store_pair(dst + i, load_as<S>(work + i), load_as<S>(work + i + W));
  for (; i < n; ++i) dst[i] = to_bf16(float(work[i]));
}

template <class S, class In, class Out>
void transform_rows(const FwhtArgs& a) {
  const In* src = static_cast<const In*>(a.src);
  Out* dst = static_cast<Out*>(a.dst);
  const int m = a.m;
  const int64_t len = a.n / m;
  constexpr bool out_is_compute = std::is_same<Out, S>::value;
  // bfloat16 results of the m-point and long-row paths are finished in the float work buffer
  // and converted in a last pass.
  constexpr bool convert_last = kPairedLoad<In>;
  using Target = std::conditional_t<convert_last, S, Out>;
  const bool paired = len >= 2 * Vec<S>::W;
  S h_scaled[40 * 40];
  for (int i = 0; i < m * m; ++i) h_scaled[i] = m > 1 ? S(a.had_m[i]) * S(a.scale) : S(0);
  const S block_scale = m > 1 ? S(1) : S(a.scale);

  if (len <= kRowLimit<S> || (len <= kChunkMax<S> && a.rows >= 2 * a.threads)) {
    // Enough independent rows to keep every thread busy; tiny calls stay on one thread.
    const int64_t work_items = a.rows * a.n;
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(a.threads, work_items >> 14)));
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    {
      Scratch<S, 1> scratch;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < a.rows; ++i) errors.run([&] {
        const In* s = src + i * a.src_row_stride;
        Out* d = dst + i * a.dst_row_stride;
        S* w = out_is_compute ? reinterpret_cast<S*>(d) : scratch.get(a.n);
        if (m == 1) {
          // bfloat16 too: its last pass writes the pairs straight to dst.
          row_transform<S>(s, d, w, len, block_scale);
          return;
        }
        Target* t = reinterpret_cast<Target*>(convert_last ? static_cast<void*>(w) : d);
        for (int b = 0; b < m; ++b)
          row_transform<S>(s + b * len, w + b * len, w + b * len, len, S(1));
        small_matrix_pass<S>(w, t, m, len, h_scaled, 0, len);
        if constexpr (convert_last) convert_pairs<S>(w, d, a.n, paired);
      });
    }
    errors.rethrow();
    return;
  }

  Scratch<S, 2> scratch;
  for (int64_t i = 0; i < a.rows; ++i) {
    const In* s = src + i * a.src_row_stride;
    Out* d = dst + i * a.dst_row_stride;
    S* w = out_is_compute ? reinterpret_cast<S*>(d) : scratch.get(a.n);
    Target* t = reinterpret_cast<Target*>(convert_last ? static_cast<void*>(w) : d);
    // Column pieces of a row for the threads: whole pairs of vectors (a bfloat16 pair, and
    // small_matrix_pass's step), the last takes the rest.
    const int64_t pieces = int64_t(a.threads) * 4;
    constexpr int64_t align = 2 * Vec<S>::W;
    const int64_t piece = (len / pieces / align) * align;
    if (m == 1) {
      long_row_transform<S>(s, t, w, len, block_scale, a.threads);
    } else {
      for (int b = 0; b < m; ++b)
        long_row_transform<S>(s + b * len, w + b * len, w + b * len, len, S(1), a.threads);
      ParallelErrors errors;
#pragma omp parallel for num_threads(a.threads) schedule(static)
      for (int64_t p = 0; p < pieces; ++p) errors.run([&] {
        small_matrix_pass<S>(w, t, m, len, h_scaled, p * piece,
                             p == pieces - 1 ? len : (p + 1) * piece);
      });
      errors.rethrow();
    }
    if constexpr (convert_last) {
      ParallelErrors errors;
#pragma omp parallel for num_threads(a.threads) schedule(static)
      for (int64_t p = 0; p < pieces * m; ++p) errors.run([&] {
        const int64_t begin = p * piece, end = p == pieces * m - 1 ? a.n : (p + 1) * piece;
        convert_pairs<S>(w + begin, d + begin, end - begin, true);
      });
      errors.rethrow();
    }
  }
}

}  // namespace fwht_detail

void fwht_run(const FwhtArgs& a) {
  using namespace fwht_detail;
  switch (a.dtype) {
    case DType::f32: return transform_rows<float, float, float>(a);
    case DType::f64: return transform_rows<double, double, double>(a);
    case DType::f16: return transform_rows<float, f16_bits, f16_bits>(a);
    case DType::bf16: return transform_rows<float, bf16_bits, bf16_bits>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
