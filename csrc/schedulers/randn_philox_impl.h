// The Philox normal generator (randn_philox.h), written once over vec.h's vectors and compiled
// per ISA (randn_philox.cpp, _avx2.cpp, _avx512.cpp). Compute-bound: per 64 values, 16
// counters through 10 Philox rounds (two 32x32 -> 64-bit products per counter and round) and
// 32 Box-Muller pairs (a log, a square root and a quarter-turn sine / cosine each); the only
// memory traffic is the one write of the output.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/parallel.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "schedulers/randn_philox.h"

namespace kernelkit {
namespace KK_ISA {
namespace randn_philox_detail {

using VF = VecT<float>;
constexpr int W = Vec<float>::W;
#if defined(KK_VEC_512)
using VU = vu16;
using VI = vi16;
#else
using VU = vu8;
using VI = vi8;
#endif

constexpr int kBlock = 64;           // values per block: 16 counters of 4 words
constexpr int kBlockCounters = 16;
constexpr int kRounds = 10;
// Philox4x32's multipliers and Weyl key increments (Salmon et al. 2011, Random123).
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kBump0 = 0x9E3779B9u, kBump1 = 0xBB67AE85u;
// Below this many values per thread a call uses fewer threads: a value costs about a
// nanosecond, and a second thread woken between a sampler's Python calls costs more than it
// saves on a 16384-value draw (Score-SDE PC at (1, 4, 64, 64): 1.39 ms against 1.16 ms a call).
constexpr int64_t kMinPerThread = int64_t(1) << 14;

// The high 32 bits of a * m per lane: the even and odd lanes' 64-bit products, blended.
KK_INLINE VU mulhi(VU a, uint32_t m) {
#if defined(KK_VEC_512)
  const __m512i va = __m512i(a), vm = _mm512_set1_epi32(int(m));
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(va, vm), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(va, 32), vm);
  return VU(_mm512_mask_blend_epi32(0xAAAA, even, odd));
#elif defined(KK_ISA_AVX2)
  const __m256i va = __m256i(a), vm = _mm256_set1_epi32(int(m));
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(va, vm), 32);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(va, 32), vm);
  return VU(_mm256_blend_epi32(even, odd, 0xAA));
#else
  VU h;
  for (int l = 0; l < W; ++l) h[l] = uint32_t((uint64_t(a[l]) * m) >> 32);
  return h;
#endif
}

KK_INLINE VF sqrt_vec(VF v) {
#if defined(KK_VEC_512)
  return VF(_mm512_sqrt_ps(v));
#elif defined(KK_ISA_AVX2)
  return VF(_mm256_sqrt_ps(v));
#else
  for (int l = 0; l < W; ++l) v[l] = __builtin_sqrtf(v[l]);
  return v;
#endif
}

struct Words {
  VU w0, w1, w2, w3;
};

// Philox4x32-10 of W counters (c0 per lane; c1, c2, c3 shared) under key (k0, k1).
KK_INLINE Words philox4x32_10(VU c0, uint32_t c1s, uint32_t c2s, uint32_t c3s, uint32_t k0,
                              uint32_t k1) {
  VU c1 = VU{} + c1s, c2 = VU{} + c2s, c3 = VU{} + c3s;
  for (int r = 0; r < kRounds; ++r) {
    const VU hi0 = mulhi(c0, kMul0), lo0 = c0 * kMul0;
    const VU hi1 = mulhi(c2, kMul1), lo1 = c2 * kMul1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kBump0;
    k1 += kBump1;
  }
  return {c0, c1, c2, c3};
}

// log(u) for u in [2^-32, 1]: u = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) = f P(f) with
// f = m - 1 exact, P of degree 8 fitted to log1p(f) / f there (relative error 1.7e-7 evaluated
// in float), so values near 1 keep their relative accuracy (small radii stay accurate).
KK_INLINE VF log_unit_interval(VF u) {
  const VI ub = bit_cast_vec<VI>(u);
  VI e = (ub >> 23) - 127;
  VF m = bit_cast_vec<VF>((ub & 0x7fffff) | 0x3f800000);
  const VI big = m > 1.41421356f;  // -1 where m is halved
  m = big ? m * 0.5f : m;
  e -= big;
  const VF f = m - 1.0f;
  VF p = VF{} + 0.08959751576185226f;
  p = fmadd(p, f, VF{} - 0.14482112228870392f);
  p = fmadd(p, f, VF{} + 0.1491740345954895f);
  p = fmadd(p, f, VF{} - 0.1654375046491623f);
  p = fmadd(p, f, VF{} + 0.19958415627479553f);
  p = fmadd(p, f, VF{} - 0.25002944469451904f);
  p = fmadd(p, f, VF{} + 0.3333415985107422f);
  p = fmadd(p, f, VF{} - 0.4999997913837433f);
  p = fmadd(p, f, VF{} + 1.0f);
  return fmadd(__builtin_convertvector(e, VF), VF{} + 0.693147180559945f, f * p);
}

KK_INLINE VF radius(VU w) {
  const VF u = fmadd(__builtin_convertvector(VI(w >> 1), VF), VF{} + 0x1p-31f, VF{} + 0x1p-32f);
  return sqrt_vec(log_unit_interval(u) * -2.0f);
}

// (cos, sin) of 2 pi t / 2^24, t = w >> 8: t = q 2^22 + r with q the nearest quarter turn and
// r in [-2^21, 2^21) exact in integers, so the polynomials see |a| <= pi / 4 (Taylor to a^9 and
// a^10: error below 2e-9) and the quadrant only swaps and negates.
KK_INLINE void turn_cos_sin(VU w, VF& cos_out, VF& sin_out) {
  const VI t = VI(w >> 8);
  const VI q = (t + (1 << 21)) >> 22;
  const VF a = __builtin_convertvector(t - (q << 22), VF) * float(6.283185307179586 / 16777216.0);
  const VF a2 = a * a;
  VF s = VF{} + float(1.0 / 362880.0);
  s = fmadd(s, a2, VF{} - float(1.0 / 5040.0));
  s = fmadd(s, a2, VF{} + float(1.0 / 120.0));
  s = fmadd(s, a2, VF{} - float(1.0 / 6.0));
  s = fmadd(s * a2, a, a);
  VF c = VF{} - float(1.0 / 3628800.0);
  c = fmadd(c, a2, VF{} + float(1.0 / 40320.0));
  c = fmadd(c, a2, VF{} - float(1.0 / 720.0));
  c = fmadd(c, a2, VF{} + float(1.0 / 24.0));
  c = fmadd(c, a2, VF{} - 0.5f);
  c = fmadd(c, a2, VF{} + 1.0f);
  const VI odd = -(q & 1);  // quadrants 1 and 3 swap cosine and sine
  const VF cs = odd ? s : c, sn = odd ? c : s;
  // Sign flips: the cosine in quadrants 1 and 2, the sine in quadrants 2 and 3.
  cos_out = bit_cast_vec<VF>(bit_cast_vec<VU>(cs) ^ (VU((q + 1) & 2) << 30));
  sin_out = bit_cast_vec<VF>(bit_cast_vec<VU>(sn) ^ (VU(q & 2) << 30));
}

// The 64 values of block b into dst[0..64) (floats).
KK_INLINE void block_values(int64_t b, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1,
                            float* dst) {
  VU lane;
  for (int l = 0; l < W; ++l) lane[l] = uint32_t(l);
  const uint64_t j0 = uint64_t(b) * kBlockCounters;  // 16 | 2^32: one high word per block
  for (int h = 0; h < kBlockCounters / W; ++h) {
    const Words w = philox4x32_10(lane + uint32_t(j0 + uint64_t(h) * W), uint32_t(j0 >> 32),
                                  o0, o1, k0, k1);
    const VF r0 = radius(w.w0), r1 = radius(w.w2);
    VF c0, s0, c1, s1;
    turn_cos_sin(w.w1, c0, s0);
    turn_cos_sin(w.w3, c1, s1);
    store_vec(dst + 0 * kBlockCounters + h * W, r0 * c0);
    store_vec(dst + 1 * kBlockCounters + h * W, r0 * s0);
    store_vec(dst + 2 * kBlockCounters + h * W, r1 * c1);
    store_vec(dst + 3 * kBlockCounters + h * W, r1 * s1);
  }
}

template <class T> KK_INLINE void store_block(const float* src, T* dst, int64_t count) {
  if constexpr (std::is_same_v<T, double>) {
    for (int64_t i = 0; i < count; ++i) dst[i] = src[i];
  } else {
    int64_t i = 0;
    for (; i + W <= count; i += W) store_vec(dst + i, load_as<float>(src + i));
    for (; i < count; ++i) dst[i] = StoreAs<T>::from(src[i]);
  }
}

// Blocks [b0, b1) of the n values.
template <class T> void run_blocks(const RandnPhiloxArgs& a, int64_t b0, int64_t b1) {
  T* out = static_cast<T*>(a.out);
  const uint32_t k0 = uint32_t(a.seed), k1 = uint32_t(a.seed >> 32);
  const uint32_t o0 = uint32_t(a.offset), o1 = uint32_t(a.offset >> 32);
  alignas(64) float buf[kBlock];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * kBlock, count = std::min<int64_t>(kBlock, a.n - base);
    if constexpr (std::is_same_v<T, float>) {
      if (count == kBlock) {
        block_values(b, k0, k1, o0, o1, out + base);
        continue;
      }
    }
    block_values(b, k0, k1, o0, o1, buf);
    store_block(buf, out + base, count);
  }
}

template <class T> void run_all(const RandnPhiloxArgs& a) {
  const int64_t blocks = (a.n + kBlock - 1) / kBlock;
  const int64_t useful = std::max<int64_t>(1, a.n / kMinPerThread);
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(a.threads, useful)));
  if (threads == 1) return run_blocks<T>(a, 0, blocks);
  const int64_t per = (blocks + threads - 1) / threads;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t)
    errors.run([&] {
      const int64_t b = std::min(blocks, t * per), e = std::min(blocks, b + per);
      if (b < e) run_blocks<T>(a, b, e);
    });
  errors.rethrow();
}

}  // namespace randn_philox_detail

void randn_philox_run(const RandnPhiloxArgs& a) {
  using namespace randn_philox_detail;
  switch (a.dtype) {
    case DType::f32: return run_all<float>(a);
    case DType::f64: return run_all<double>(a);
    case DType::f16: return run_all<f16_bits>(a);
    case DType::bf16: return run_all<bf16_bits>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
