// The fused bi_attention forward for one ISA (bi_attention.cpp, _avx2.cpp, _avx512.cpp). Per
// batch entry the sign words of k (keys interleaved per 32-bit word, so one BitVec holds a word
// of kLanes keys) and of v's columns (the same, along the keys); per query row the scores of
// kLanes keys come from one xor + popcount per word of d and are thresholded in registers into
// the bits of A, then each output column is popcount(A) - 2 popcount(A & neg(v)). Memory
// traffic: q, k and v read once, out written once; nothing of size Lq x Lk is stored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "binary/bi_attention.h"
#include "binary/sign_words_impl.h"
#include "common/parallel.h"
#include "common/popcount.h"
#include "common/scratch.h"
#include "common/tiling.h"

namespace kernelkit {
namespace KK_ISA {
namespace bi_attention_detail {

using namespace sign_words;

constexpr int kSlotBits = 60;  // thread_buffer slot (distinct from the other kernels')
constexpr int kLanes = 2 * kBitVecWords;  // 32-bit lanes of a BitVec: keys or columns per step
constexpr int64_t kQueryBlock = 64;       // query rows binarized at a time

typedef int32_t Lanes __attribute__((vector_size(kLanes * 4)));
typedef uint8_t ByteLanes __attribute__((vector_size(kLanes)));
typedef float FloatLanes __attribute__((vector_size(kLanes * 4)));
typedef double DoubleLanes __attribute__((vector_size(kLanes * 8)));

template <class S> struct ScoreLanesOf { using type = FloatLanes; };
template <> struct ScoreLanesOf<double> { using type = DoubleLanes; };

// Bit l of the result = lane l of m is nonzero (m's lanes are 0 or -1).
KK_INLINE uint32_t lane_bits(Lanes m) {
#if defined(KK_ISA_AVX512)
  return uint32_t(_mm512_movepi32_mask(__m512i(m)));
#elif defined(KK_ISA_AVX2)
  return uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(__m256i(m))));
#else
  uint32_t bits = 0;
  for (int l = 0; l < kLanes; ++l) bits |= uint32_t(m[l] != 0) << l;
  return bits;
#endif
}

KK_INLINE Lanes count_lanes(BitVec v) { return Lanes(popcount_lanes32(v)); }

KK_INLINE BitVec load_lanes(const uint32_t* p) {
  return load_bits(reinterpret_cast<const uint64_t*>(p));
}

// Sizes of one call and the per-thread scratch they need, in uint32 words.
struct Geometry {
  int64_t dw, lkw, lk_pad, dv_pad;
  explicit Geometry(const BiAttentionArgs& a)
      : dw(ceil_div(a.d, 32)), lkw(ceil_div(a.Lk, 32)),
        lk_pad(round_up(std::max<int64_t>(a.Lk, 1), kLanes)), dv_pad(round_up(a.dv, kLanes)) {}
  int64_t key_words() const { return dw * lk_pad; }
  int64_t value_words() const { return lkw * dv_pad; }
  int64_t words() const {
    return key_words() + value_words() + kQueryBlock * dw + lkw + 2 * kLanes;
  }
};

// NaN seen per operand, for the error after the region.
enum : uint8_t { kNanQ = 1, kNanK = 2, kNanV = 4, kNanScores = 8 };

template <class T> class EntryKernel {
  using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
  using ScoreLanes = typename ScoreLanesOf<S>::type;

 public:
  EntryKernel(const BiAttentionArgs& a, const Geometry& g, uint32_t* scratch)
      : a_(a), g_(g), keys_(scratch), values_(keys_ + g.key_words()),
        queries_(values_ + g.value_words()), attend_(queries_ + kQueryBlock * g.dw) {}

  // Query rows [i0, i1) of entry e; the key and value bits are made when e changes.
  uint8_t run(int64_t e, int64_t i0, int64_t i1) {
    uint8_t nan = 0;
    if (e != entry_) {
      nan |= binarize_keys_values(e);
      entry_ = e;
    }
    const T* q = static_cast<const T*>(a_.q) + a_.offsets[e];
    T* out = static_cast<T*>(a_.out) + e * a_.Lq * a_.dv;
    for (int64_t b0 = i0; b0 < i1; b0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, i1 - b0);
      const FloatLines<T> x{q + b0 * a_.q_rs, a_.q_rs, a_.q_cs, a_.d};
      if (binarize_lines(x, 0, rows, reinterpret_cast<int32_t*>(queries_), g_.dw, 1))
        nan |= kNanQ;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = b0 + r;
        if (attend_row(queries_ + r * g_.dw, mask_row(e, i))) nan |= kNanScores;
        store_row(out + i * a_.dv);
      }
    }
    return nan;
  }

 private:
  uint8_t binarize_keys_values(int64_t e) {
    uint8_t nan = 0;
    const int64_t Lk = a_.Lk;
    const T* k = static_cast<const T*>(a_.k) + a_.offsets[a_.batch + e];
    const T* v = static_cast<const T*>(a_.v) + a_.offsets[2 * a_.batch + e];
    // keys_[w * lk_pad + j]: word w of key j; the padding keys are zero.
    if (binarize_lines(FloatLines<T>{k, a_.k_rs, a_.k_cs, a_.d}, 0, Lk,
                       reinterpret_cast<int32_t*>(keys_), 1, g_.lk_pad))
      nan |= kNanK;
    for (int64_t w = 0; w < g_.dw; ++w)
      std::fill(keys_ + w * g_.lk_pad + Lk, keys_ + (w + 1) * g_.lk_pad, 0u);
    // values_[w * dv_pad + c]: word w (keys 32 w ...) of the negative signs of column c.
    if (binarize_lines(FloatLines<T>{v, a_.v_cs, a_.v_rs, Lk}, 0, a_.dv,
                       reinterpret_cast<int32_t*>(values_), 1, g_.dv_pad))
      nan |= kNanV;
    for (int64_t w = 0; w < g_.lkw; ++w)
      std::fill(values_ + w * g_.dv_pad + a_.dv, values_ + (w + 1) * g_.dv_pad, 0u);
    return nan;
  }

  const void* mask_row(int64_t e, int64_t i) const {
    if (a_.mask_kind == BiAttentionMask::none) return nullptr;
    const int64_t at = a_.offsets[3 * a_.batch + e] + i * a_.mask_rs;
    if (a_.mask_kind == BiAttentionMask::keep) return static_cast<const uint8_t*>(a_.mask) + at;
    return static_cast<const S*>(a_.mask) + at;
  }

  // attend_[0, lkw) = the bits of A's row for one query (words q); returns NaN scores seen.
  bool attend_row(const uint32_t* q, const void* mask) {
    bool nan = false;
    std::fill(attend_, attend_ + g_.lkw, 0u);
    for (int64_t j0 = 0; j0 < a_.Lk; j0 += kLanes) {
      BitVec counts = broadcast_bits(0);
      for (int64_t w = 0; w < g_.dw; ++w)
        counts += popcount_lanes32(broadcast_bits32(q[w]) ^ load_lanes(keys_ + w * g_.lk_pad + j0));
      const Lanes dot = int32_t(a_.d) - 2 * Lanes(counts);
      const uint32_t bits = lane_bits(attends(dot, mask, j0, nan));
      attend_[j0 / 32] |= bits << (j0 % 32);
    }
    if (a_.Lk % 32) attend_[g_.lkw - 1] &= (1u << (a_.Lk % 32)) - 1;  // keys past Lk
    return nan;
  }

  // The mask values of keys [j0, j0 + n) of a row as lanes (0 past n).
  template <class V, class E> V mask_lanes(const E* row, int64_t j0, int64_t n) const {
    const E* m = row + j0 * a_.mask_cs;
    V lanes{};
    if (a_.mask_cs == 1 && n == kLanes)
      std::memcpy(&lanes, m, sizeof lanes);
    else
      for (int64_t l = 0; l < n; ++l) lanes[l] = m[l * a_.mask_cs];
    return lanes;
  }

  // Lanes of -1 where S > 0 for keys [j0, j0 + kLanes) (lanes past Lk are masked later).
  Lanes attends(Lanes dot, const void* mask, int64_t j0, bool& nan) const {
    const int64_t n = std::min<int64_t>(kLanes, a_.Lk - j0);
    if (a_.mask_kind == BiAttentionMask::none) return dot > 0;
    if (a_.mask_kind == BiAttentionMask::keep) {
      const auto keep = mask_lanes<ByteLanes>(static_cast<const uint8_t*>(mask), j0, n);
      return (dot > 0) & (__builtin_convertvector(keep, Lanes) != 0);
    }
    const auto add = mask_lanes<ScoreLanes>(static_cast<const S*>(mask), j0, n);
    // The reference's arithmetic: the exact dot in S, divided by sqrt(d) in S, plus the mask.
    const ScoreLanes s = __builtin_convertvector(dot, ScoreLanes) / S(a_.sqrt_d) + add;
    const Lanes is_nan = __builtin_convertvector(s != s, Lanes);
    nan |= lane_bits(is_nan) != 0;
    return __builtin_convertvector(s > 0, Lanes);
  }

  // out row = popcount(A) - 2 popcount(A & neg(v column)), column by column.
  void store_row(T* out) const {
    int32_t attended = 0;
    for (int64_t w = 0; w < g_.lkw; ++w) attended += __builtin_popcount(attend_[w]);
    for (int64_t c0 = 0; c0 < a_.dv; c0 += kLanes) {
      BitVec neg = broadcast_bits(0);
      for (int64_t w = 0; w < g_.lkw; ++w)
        neg += popcount_lanes32(broadcast_bits32(attend_[w]) & load_lanes(values_ + w * g_.dv_pad + c0));
      const Lanes sums = attended - 2 * Lanes(neg);
      const int64_t n = std::min<int64_t>(kLanes, a_.dv - c0);
      if constexpr (std::is_same_v<T, float>) {
        if (n == kLanes) {
          const FloatLanes f = __builtin_convertvector(sums, FloatLanes);
          std::memcpy(out + c0, &f, sizeof f);
          continue;
        }
      }
      for (int64_t l = 0; l < n; ++l) out[c0 + l] = StoreAs<T>::from(S(sums[l]));
    }
  }

  const BiAttentionArgs& a_;
  const Geometry& g_;
  uint32_t *keys_, *values_, *queries_, *attend_;
  int64_t entry_ = -1;
};

[[noreturn]] inline void throw_nan(uint8_t seen) {
  const char* what = (seen & kNanQ)   ? "q contains NaN"
                     : (seen & kNanK) ? "k contains NaN"
                     : (seen & kNanV) ? "v contains NaN"
                                      : "the scores contain NaN (from the mask)";
  throw std::invalid_argument(std::string("bi_attention: ") + what);
}

template <class T> void run_typed(const BiAttentionArgs& a) {
  const Geometry g(a);
  // Work items: whole entries, or an entry's query rows split when entries are fewer than
  // threads (each part makes the entry's key and value bits again).
  const int64_t work = a.batch * a.Lq * (std::max<int64_t>(a.Lk, 1) * g.dw + a.dv * g.lkw);
#if defined(_OPENMP)
  const int want = int(std::max<int64_t>(1, std::min<int64_t>(a.threads, work / 32768 + 1)));
#else
  const int want = 1;
#endif
  const int64_t parts =
      a.batch >= want ? 1 : std::min(ceil_div(want, a.batch), ceil_div(a.Lq, kQueryBlock));
  const int64_t items = a.batch * parts;
  const int threads = int(std::min<int64_t>(want, items));
  const int64_t per_thread = round_up(g.words(), 16);
  Scratch<uint32_t, kSlotBits> scratch;
  uint32_t* base = scratch.get(per_thread * threads);
  std::vector<uint8_t> nan(size_t(threads), 0);
  ParallelErrors errors;
#pragma omp parallel num_threads(threads)
  errors.run([&] {
    const int t = omp_thread_index();
    EntryKernel<T> kernel(a, g, base + per_thread * t);
    for (int64_t item = items * t / threads; item < items * (t + 1) / threads; ++item) {
      const int64_t e = item / parts, p = item % parts;
      nan[size_t(t)] |= kernel.run(e, a.Lq * p / parts, a.Lq * (p + 1) / parts);
    }
  });
  errors.rethrow();
  uint8_t seen = 0;
  for (uint8_t f : nan) seen |= f;
  if (seen) throw_nan(seen);
}

}  // namespace bi_attention_detail

void bi_attention_forward_run(const BiAttentionArgs& a) {
  using namespace bi_attention_detail;
  switch (a.dtype) {
    case DType::f64: return run_typed<double>(a);
    case DType::f16: return run_typed<f16_bits>(a);
    case DType::bf16: return run_typed<bf16_bits>(a);
    default: return run_typed<float>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
