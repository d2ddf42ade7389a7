// binary_gemm for one ISA (binary_gemm.cpp, _avx2.cpp, _avx512.cpp): float operands binarized
// into pack_signs' int32 words first (one read of the floats, NaN detected on the way), then
// the popcount core (popcount_gemm_core_impl.h) with an epilogue that writes K - 2 count (or
// that times scale plus bias) in the output dtype; M == 1 or N == 1 takes a matrix-vector
// pass that streams the packed matrix once (memory-bound: 2 MiB for 4096 x 4096 bits).
#pragma once

#include <cmath>
#include <string>
#include <stdexcept>
#include <type_traits>

#include "binary/binary_gemm.h"
#include "binary/popcount_gemm_core_impl.h"
#include "binary/sign_words_impl.h"
#include "common/parallel.h"
#include "common/peak.h"
#include "common/vec.h"

namespace kernelkit {
namespace KK_ISA {
namespace binary_gemm_detail {

using namespace popcount_gemm;

// thread_buffer / Scratch slots (distinct from the ones other kernels keep).
constexpr int kSlotCore = 40, kSlotSigns = 41, kSlotVector = 42;

// The sign words of float operands (binarize_lines) come from binary/sign_words_impl.h.
using namespace sign_words;

// ---- the epilogue: counts into C ----

// C[i, j] = K - 2 count (int32), or (K - 2 count) * scale[j] + bias[j] in the compute type S
// (one fma), stored as TO. scale and bias have stride 0 when they are one value.
template <class TO> using ComputeOf = std::conditional_t<std::is_same_v<TO, double>, double, float>;

template <class TO> struct ProductEpilogue {
  using S = ComputeOf<TO>;
  TO* c;
  int64_t rs, cs;
  int32_t K;
  const S* scale;
  int64_t scale_stride;
  const S* bias;
  int64_t bias_stride;

  KK_INLINE TO value(int32_t count, int64_t j) const {
    const int32_t dot = K - 2 * count;
    if constexpr (std::is_same_v<TO, int32_t>) {
      return dot;
    } else {
      return StoreAs<TO>::from(std::fma(S(dot), scale[j * scale_stride], bias[j * bias_stride]));
    }
  }

  void store_row(const int32_t* counts, int64_t i, int64_t j0, int64_t cols) const {
    TO* row = c + i * rs + j0 * cs;
    int64_t j = 0;
    if constexpr (std::is_same_v<TO, int32_t>) {
      if (cs == 1) {
        for (; j < cols; ++j) row[j] = K - 2 * counts[j];
        return;
      }
    } else if constexpr (!std::is_same_v<TO, double>) {
      if (cs == 1) {
        const vi8 k = vi8{} + K;
        for (; j + 8 <= cols; j += 8) {
          vi8 n;
          std::memcpy(&n, counts + j, sizeof n);
          const vf8 dot = __builtin_convertvector(k - 2 * n, vf8);
          const vf8 s = scale_stride ? load_as<float>(scale + j0 + j)
                                     : Vec<float>::broadcast(scale[0]);
          const vf8 b = bias_stride ? load_as<float>(bias + j0 + j)
                                    : Vec<float>::broadcast(bias[0]);
          store_vec_checked(row + j, fma8(dot, s, b));
        }
      }
    }
    for (; j < cols; ++j) row[j * cs] = value(counts[j], j0 + j);
  }

  void store(const int32_t* counts, int64_t ldc, int64_t i0, int64_t j0, int64_t rows,
             int64_t cols) const {
    for (int64_t i = 0; i < rows; ++i) store_row(counts + i * ldc, i0 + i, j0, cols);
  }

  // a * b + c with one rounding per lane.
  KK_INLINE static vf8 fma8(vf8 a, vf8 b, vf8 c) {
#if defined(KK_ISA_AVX2)
    return _mm256_fmadd_ps(a, b, c);
#else
    vf8 r;
    for (int l = 0; l < 8; ++l) r[l] = std::fma(a[l], b[l], c[l]);
    return r;
#endif
  }
};

// ---- matrix-vector products: M == 1 (or N == 1) ----

// counts[l - l0] = popcount(x xor line l) for lines [l0, l1) of m, any strides.
inline void gemv_generic(const uint64_t* x, const PackedBits& m, int64_t l0, int64_t l1,
                         int32_t* counts) {
  for (int64_t l = l0; l < l1; ++l) {
    int64_t n = 0;
    for (int64_t w = 0; w < m.kwords(); ++w) n += popcount_word(x[w] ^ m.kword(l, w));
    counts[l - l0] = int32_t(n);
  }
}

// The same for lines whose words are contiguous (m.word_stride == 1), x as 64-bit k-words
// zero-padded to a whole BitVec: BitVec loads along each line, 4 lines at a time.
inline void gemv_lines(const uint64_t* x, const PackedBits& m, int64_t l0, int64_t l1,
                       int32_t* counts) {
  const int64_t full = m.words / 2, vec_words = full / kBitVecWords * kBitVecWords;
  const bool odd = m.words % 2 != 0;
  constexpr int kLines = 4;  // independent dot products in flight
  int64_t l = l0;
  for (; l + kLines <= l1; l += kLines) {
    const int32_t* line[kLines];
    BitVec acc[kLines];
    for (int r = 0; r < kLines; ++r) {
      line[r] = m.p + (l + r) * m.line_stride;
      acc[r] = broadcast_bits(0);
    }
    for (int64_t w = 0; w < vec_words; w += kBitVecWords) {
      const BitVec xv = load_bits(x + w);
#pragma GCC unroll 4
      for (int r = 0; r < kLines; ++r) {
        BitVec mv;
        std::memcpy(&mv, line[r] + 2 * w, sizeof mv);
        acc[r] += popcount_lanes(xv ^ mv);
      }
    }
    for (int r = 0; r < kLines; ++r) {
      int64_t n = int64_t(sum_lanes(acc[r]));
      for (int64_t w = vec_words; w < full; ++w) {
        uint64_t mw;
        std::memcpy(&mw, line[r] + 2 * w, 8);
        n += popcount_word(x[w] ^ mw);
      }
      if (odd) n += popcount_word(uint32_t(x[full]) ^ uint32_t(line[r][2 * full]));
      counts[l - l0 + r] = int32_t(n);
    }
  }
  gemv_generic(x, m, l, l1, counts + (l - l0));
}

// The same for lines contiguous per word (m.line_stride == 1): 32-bit lanes across lines.
inline void gemv_words(const uint64_t* x, const PackedBits& m, int64_t l0, int64_t l1,
                       int32_t* counts) {
  constexpr int64_t kLanes = 2 * kBitVecWords, kVecs = 4, kStrip = kLanes * kVecs;
  int64_t l = l0;
  for (; l + kStrip <= l1; l += kStrip) {
    BitVec acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = broadcast_bits(0);
    for (int64_t w = 0; w < m.words; ++w) {
      const BitVec xv = broadcast_bits32(reinterpret_cast<const uint32_t*>(x)[w]);
      const int32_t* row = m.p + w * m.word_stride + l;
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) {
        BitVec mv;
        std::memcpy(&mv, row + v * kLanes, sizeof mv);
        acc[v] += popcount_lanes32(xv ^ mv);
      }
    }
    std::memcpy(counts + (l - l0), acc, sizeof acc);
  }
  gemv_generic(x, m, l, l1, counts + (l - l0));
}

// ---- the operands of one call ----

template <class T> struct FloatOperand {
  const T* p;
  int64_t bs, rs, cs;
};

// The pack_signs words of one operand's batch entries (distinct entries only: a broadcast
// operand, bs == 0, is binarized once): the packed input itself, or a buffer filled from a
// float input by binarize().
struct OperandBits {
  PackedBits bits;   // entry 0
  int64_t entry_stride = 0;
  int64_t entries = 0;  // distinct entries to binarize (0 for a packed input)
  PackedBits at(int64_t t) const {
    PackedBits b = bits;
    b.p += t * entry_stride;
    return b;
  }
};

// Lines of an operand: rows of A (lines = M, along K = cs) or columns of B (lines = N,
// along K = rs).
struct LineGeometry {
  int64_t lines, line_stride, k_stride;
};

inline LineGeometry a_lines(const BinaryGemmArgs& g) { return {g.M, g.a.rs, g.a.cs}; }
inline LineGeometry b_lines(const BinaryGemmArgs& g) { return {g.N, g.b.cs, g.b.rs}; }

// Where a float operand's words go: line-major (each line's words contiguous) when its
// elements are contiguous along K, else word-major (lines contiguous per word).
inline OperandBits plan_bits(const BinaryOperand& op, const LineGeometry& lg, int64_t K,
                             int64_t batch, int32_t* buffer) {
  OperandBits ob;
  const int64_t words = ceil_div(K, 32);
  if (op.packed) {
    ob.bits = {static_cast<const int32_t*>(op.p), lg.line_stride, lg.k_stride, words};
    ob.entry_stride = op.bs;
    return ob;
  }
  ob.entries = op.bs == 0 ? 1 : batch;
  ob.entry_stride = op.bs == 0 ? 0 : lg.lines * words;
  const bool line_major = lg.k_stride == 1 || lg.line_stride != 1;
  ob.bits = line_major ? PackedBits{buffer, words, 1, words}
                       : PackedBits{buffer, 1, lg.lines, words};
  return ob;
}

inline int64_t buffer_words(const BinaryOperand& op, const LineGeometry& lg, int64_t K,
                            int64_t batch) {
  return op.packed ? 0 : (op.bs == 0 ? 1 : batch) * lg.lines * ceil_div(K, 32);
}

// Thread t of T binarizes its share of every distinct entry's lines. Returns NaN seen.
template <class T>
bool binarize_share(const FloatOperand<T>& f, const LineGeometry& lg, int64_t K,
                    const OperandBits& ob, int t, int T_) {
  bool nan = false;
  const int64_t l0 = lg.lines * t / T_, l1 = lg.lines * (t + 1) / T_;
  for (int64_t e = 0; e < ob.entries; ++e) {
    const PackedBits dst = ob.at(e);
    const FloatLines<T> x{f.p + e * f.bs, lg.line_stride, lg.k_stride, K};
    nan |= binarize_lines(x, l0, l1, const_cast<int32_t*>(dst.p), dst.line_stride,
                          dst.word_stride);
  }
  return nan;
}

template <class T> FloatOperand<T> float_operand(const BinaryOperand& op) {
  return {static_cast<const T*>(op.p), op.bs, op.rs, op.cs};
}

// ---- one call ----

// The work of thread t of T on batch entry `entry`, split `share` ways (t < share).
template <class TO>
void product_share(const BinaryGemmArgs& g, const OperandBits& ab, const OperandBits& bb,
                   const ProductEpilogue<TO>& ep_all, int64_t entry, uint64_t* scratch,
                   int t, int share) {
  ProductEpilogue<TO> ep = ep_all;
  ep.c += entry * g.c_bs;
  const PackedBits a = ab.at(entry), b = bb.at(entry);
  const Plan p{g.M, g.N, g.K};
  if (g.M == 1 || g.N == 1) {
    // One vector (row 0 of A, or column 0 of B) against the lines of the other operand.
    const bool row = g.M == 1;
    const PackedBits& x = row ? a : b;
    const PackedBits& m = row ? b : a;
    const int64_t lines = row ? g.N : g.M;
    uint64_t* xw = scratch;
    const int64_t xwords = round_up(p.kwords() + 1, kBitVecWords);
    for (int64_t w = 0; w < xwords; ++w) xw[w] = w < p.kwords() ? x.kword(0, w) : 0;
    int32_t* counts = reinterpret_cast<int32_t*>(scratch + xwords);
    constexpr int64_t kChunk = 256;
    const int64_t l0 = lines * t / share, l1 = lines * (t + 1) / share;
    for (int64_t c0 = l0; c0 < l1; c0 += kChunk) {
      const int64_t c1 = std::min(l1, c0 + kChunk);
      if (m.word_stride == 1)
        gemv_lines(xw, m, c0, c1, counts);
      else if (m.line_stride == 1)
        gemv_words(xw, m, c0, c1, counts);
      else
        gemv_generic(xw, m, c0, c1, counts);
      if (row)
        ep.store(counts, 0, 0, c0, 1, c1 - c0);
      else
        ep.store(counts, 1, c0, 0, c1 - c0, 1);
    }
    return;
  }
  const Split sp = split(p, share);
  if (t >= sp.threads) return;
  const Blocking bl = blocking(p, sp);
  gemm_share(BitsA{a}, BitsB{b}, ep, p, sp, bl, carve(scratch, bl), t);
}

// Scratch words one thread needs for an entry split `share` ways.
inline int64_t share_words(const BinaryGemmArgs& g, int share) {
  const Plan p{g.M, g.N, g.K};
  if (g.M == 1 || g.N == 1) return round_up(p.kwords() + 1, kBitVecWords) + 256 / 2 + 8;
  return blocking(p, split(p, share)).words() + 8;
}

template <class TO> void run_typed(const BinaryGemmArgs& g) {
  using S = ComputeOf<TO>;
  // The scale and bias of the epilogue: arrays, or one value with stride 0.
  static const S zero = 0;
  const S scale_value = S(g.scale_value);
  const ProductEpilogue<TO> ep{static_cast<TO*>(g.c), g.c_rs, g.c_cs, int32_t(g.K),
                               g.scale ? static_cast<const S*>(g.scale) : &scale_value,
                               g.scale ? 1 : 0,
                               g.bias ? static_cast<const S*>(g.bias) : &zero,
                               g.bias ? 1 : 0};
  const LineGeometry la = a_lines(g), lb = b_lines(g);
  // Threads: split every entry's product when there are fewer entries than threads, else
  // give each thread whole entries.
  const int64_t work = g.M * g.N * std::max<int64_t>(1, ceil_div(g.K, 64));
#if defined(_OPENMP)
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(g.threads, work / 65536 + 1)));
#else
  const int threads = 1;
#endif
  const bool split_entries = g.batch < threads;
  const int share = split_entries ? threads : 1;
  // All scratch before the parallel region: the binarized operands, then per-thread blocks.
  Scratch<int32_t, kSlotSigns> sign_scratch;
  const int64_t a_words = buffer_words(g.a, la, g.K, g.batch);
  int32_t* signs = sign_scratch.get(a_words + buffer_words(g.b, lb, g.K, g.batch) + 1);
  const OperandBits ab = plan_bits(g.a, la, g.K, g.batch, signs);
  const OperandBits bb = plan_bits(g.b, lb, g.K, g.batch, signs + a_words);
  const int64_t per_thread = round_up(share_words(g, share), 8);
  Scratch<uint64_t, kSlotCore> core_scratch;
  uint64_t* scratch = core_scratch.get(per_thread * threads);
  bool nan_a[64] = {}, nan_b[64] = {};  // per thread (threads <= 64 take part in binarizing)
  const bool binarize = ab.entries > 0 || bb.entries > 0;
  bool any_nan = false;
  ParallelErrors errors;  // each stretch between barriers runs through it (common/parallel.h)
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_thread_index();
    if (binarize) {
      const int bt = std::min(t, 63), bT = std::min(threads, 64);
      if (t < bT) errors.run([&] {
        if (ab.entries)
          with_float_type(g.a.dtype, [&](auto* tag) {
            using T = std::remove_pointer_t<decltype(tag)>;
            nan_a[bt] = binarize_share(float_operand<T>(g.a), la, g.K, ab, bt, bT);
          });
        if (bb.entries)
          with_float_type(g.b.dtype, [&](auto* tag) {
            using T = std::remove_pointer_t<decltype(tag)>;
            nan_b[bt] = binarize_share(float_operand<T>(g.b), lb, g.K, bb, bt, bT);
          });
      });
#pragma omp barrier
#pragma omp single
      for (int i = 0; i < 64; ++i) any_nan |= nan_a[i] || nan_b[i];
      // (the single's implied barrier publishes any_nan)
    }
    if (!any_nan) errors.run([&] {
      uint64_t* mine = scratch + per_thread * t;
      if (split_entries) {
        for (int64_t e = 0; e < g.batch; ++e) product_share(g, ab, bb, ep, e, mine, t, share);
      } else {
        const int64_t e0 = g.batch * t / threads, e1 = g.batch * (t + 1) / threads;
        for (int64_t e = e0; e < e1; ++e) product_share(g, ab, bb, ep, e, mine, 0, 1);
      }
    });
  }
  errors.rethrow();
  if (any_nan) sign_words::throw_nan_operand("binary_gemm", nan_a, "a", "b");
}

}  // namespace binary_gemm_detail

void binary_gemm_run(const BinaryGemmArgs& g) {
  using namespace binary_gemm_detail;
  if (g.out_int32) return run_typed<int32_t>(g);
  switch (g.out_dtype) {
    case DType::f64: return run_typed<double>(g);
    case DType::f16: return run_typed<f16_bits>(g);
    case DType::bf16: return run_typed<bf16_bits>(g);
    default: return run_typed<float>(g);
  }
}

// ---- the compute floor ----

namespace binary_gemm_detail {

// kAcc independent accumulators += partial_popcount(x_i ^ y), y reloaded every step from
// memory (so the compiler cannot fold the loop), partial counts widened as the micro-kernel
// does. Returns the bit pairs processed.
__attribute__((noinline)) inline double popcount_loop(int64_t steps, const uint64_t* seeds,
                                                      uint64_t* sink) {
  constexpr int kAcc = 12;
  BitVec x[kAcc], total[kAcc];
  for (int i = 0; i < kAcc; ++i) {
    x[i] = broadcast_bits(seeds[i % 4] * uint64_t(i + 1));
    total[i] = broadcast_bits(0);
  }
  for (int64_t s0 = 0; s0 < steps; s0 += kPartialSums) {
    const int64_t s1 = std::min(steps, s0 + kPartialSums);
    BitVec part[kAcc];
    for (int i = 0; i < kAcc; ++i) part[i] = broadcast_bits(0);
    for (int64_t s = s0; s < s1; ++s) {
      const BitVec y = load_bits(seeds + kBitVecWords * (s & 1));
#pragma GCC unroll 12
      for (int i = 0; i < kAcc; ++i) part[i] += partial_popcount(x[i] ^ y);
    }
    for (int i = 0; i < kAcc; ++i) total[i] += widen_partial(part[i]);
  }
  BitVec all = total[0];
  for (int i = 1; i < kAcc; ++i) all += total[i];
  *sink ^= sum_lanes(all);
  return double(steps) * kAcc * 64 * kBitVecWords;
}

}  // namespace binary_gemm_detail

double binary_popcount_peak_run(int threads) {
  using namespace binary_gemm_detail;
  alignas(64) uint64_t seeds[2 * kBitVecWords + 4];
  for (int i = 0; i < 2 * kBitVecWords + 4; ++i)
    seeds[i] = 0x9e3779b97f4a7c15ull * uint64_t(i + 1);
  return measure_peak(threads, [&](int64_t steps, uint64_t* sink) {
    return popcount_loop(steps, seeds, sink);
  });
}

}  // namespace KK_ISA
}  // namespace kernelkit
