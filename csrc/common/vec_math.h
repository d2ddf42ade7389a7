// Elementwise math over the vector types of common/vec.h (exp2, exp, softplus, sigmoid, silu)
// and a transposing lane reduction. float vectors use polynomials (relative error <= 3e-7,
// enough for fp32 compute); double vectors call the C library per lane, since the float64
// path exists for checking, where accuracy matters more than speed.
#pragma once

#include <cmath>

#include "common/vec.h"

namespace kernelkit {
namespace KK_ISA {

// a * b + c, fused where the ISA has FMA (the build is ISO C++, so GCC does not contract
// a * b + c on its own).
KK_INLINE vf8 fmadd(vf8 a, vf8 b, vf8 c) {
#if defined(KK_ISA_AVX2)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

KK_INLINE vd4 fmadd(vd4 a, vd4 b, vd4 c) {
#if defined(KK_ISA_AVX2)
  return _mm256_fmadd_pd(a, b, c);
#else
  return a * b + c;
#endif
}

// 2**x. Inputs below -127 give 0 (subnormal results flush to zero), above 128 give inf, NaN
// stays NaN (the clamps pass a NaN through to the polynomial).
KK_INLINE vf8 exp2_vec(vf8 x) {
#if defined(KK_ISA_AVX2)
  // max/min return their second operand when either is NaN.
  x = _mm256_min_ps(_mm256_set1_ps(128.0f), _mm256_max_ps(_mm256_set1_ps(-127.0f), x));
#else
  x = x < -127.0f ? vf8{} - 127.0f : x;
  x = x > 128.0f ? vf8{} + 128.0f : x;
#endif
  // x + (1.5 * 2**23 + 127) rounds x to the nearest integer n and leaves n + 127 in the low
  // mantissa bits: shifted left by 23 they are the exponent field of 2**n (n = 128 gives the
  // inf pattern, n = -127 zero), and f = x - n lies in [-0.5, 0.5].
  const vf8 magic = vf8{} + 12583039.0f;
  const vf8 shifted = x + magic;
  const vf8 f = x - (shifted - magic);
  vu8 bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits <<= 23;
  vf8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  // 2**f: degree-6 fit of relative error (1.9e-9, 9.6e-8 evaluated in float, on [-0.5, 0.5]);
  // degree 5 (2.3e-7) biased long scans, where dA ~ 1 multiplies the state thousands of times.
  constexpr float kCoef[7] = {1.0f, 0.6931471824645996f, 0.24022646248340607f,
                              0.05550328642129898f, 0.009618489071726799f,
                              0.0013399930903688073f, 0.00015345810970757157f};
  vf8 p = vf8{} + kCoef[6];
  for (int i = 5; i >= 0; --i) p = fmadd(p, f, vf8{} + kCoef[i]);
  return p * scale;
}

KK_INLINE vd4 exp2_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = std::exp2(x[i]);
  return x;
}

KK_INLINE vf8 exp_vec(vf8 x) { return exp2_vec(x * 1.4426950408889634f); }

KK_INLINE vd4 exp_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = std::exp(x[i]);
  return x;
}

// log(1 + e) for e in [0, 1]: w = 1 + e is halved above sqrt(2), log(w) = 2 atanh(s) with
// s = (w - 1) / (w + 1) in [-0.172, 0.172], plus the rounding of 1 + e corrected to first order.
KK_INLINE vf8 log1p_unit(vf8 e) {
  const vf8 w = 1.0f + e;
  const vf8 err = (e - (w - 1.0f)) / w;
  const auto big = w > 1.41421356f;
  const vf8 m = big ? w * 0.5f : w;
  const vf8 k = big ? vf8{} + 0.69314718055994531f : vf8{};
  const vf8 s = (m - 1.0f) / (m + 1.0f);
  const vf8 s2 = s * s;
  vf8 p = vf8{} + (2.0f / 11);
  p = p * s2 + (2.0f / 9);
  p = p * s2 + (2.0f / 7);
  p = p * s2 + (2.0f / 5);
  p = p * s2 + (2.0f / 3);
  p = p * s2 + 2.0f;
  return k + s * p + err;
}

// softplus(x) = log(1 + e**x), and x itself above 20 (PyTorch's and Mamba's threshold).
KK_INLINE vf8 softplus_vec(vf8 x) {
  const vf8 pos = x > 0.0f ? x : vf8{};
  const vf8 neg_abs = x > 0.0f ? -x : x;
  const vf8 r = pos + log1p_unit(exp_vec(neg_abs));
  return x > 20.0f ? x : r;
}

KK_INLINE vd4 softplus_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = x[i] > 20.0 ? x[i] : std::log1p(std::exp(x[i]));
  return x;
}

// 1 / (1 + e**-x): e**-x overflows to inf for x < -88, giving 0 as it should.
template <class V> KK_INLINE V sigmoid_vec(V x) { return 1.0f / (1.0f + exp_vec(-x)); }

template <class V> KK_INLINE V silu_vec(V x) { return x * sigmoid_vec(x); }

// W vectors in, one vector out whose lane j is the sum of the lanes of v[j]: a transpose and
// add tree (7 adds for 8 floats) instead of W horizontal sums.
KK_INLINE vf8 sum_lanes_transposed(const vf8* v) {
  constexpr vi8 even{0, 2, 8, 10, 4, 6, 12, 14}, odd{1, 3, 9, 11, 5, 7, 13, 15};
  vf8 r[4], q[2];
  for (int i = 0; i < 4; ++i)
    r[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], even) +
           __builtin_shuffle(v[2 * i], v[2 * i + 1], odd);
  for (int i = 0; i < 2; ++i)
    q[i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], even) +
           __builtin_shuffle(r[2 * i], r[2 * i + 1], odd);
  return __builtin_shuffle(q[0], q[1], vi8{0, 1, 2, 3, 8, 9, 10, 11}) +
         __builtin_shuffle(q[0], q[1], vi8{4, 5, 6, 7, 12, 13, 14, 15});
}

KK_INLINE vd4 sum_lanes_transposed(const vd4* v) {
  const vd4 r0 = __builtin_shuffle(v[0], v[1], vl4{0, 4, 2, 6}) +
                 __builtin_shuffle(v[0], v[1], vl4{1, 5, 3, 7});
  const vd4 r1 = __builtin_shuffle(v[2], v[3], vl4{0, 4, 2, 6}) +
                 __builtin_shuffle(v[2], v[3], vl4{1, 5, 3, 7});
  return __builtin_shuffle(r0, r1, vl4{0, 1, 4, 5}) + __builtin_shuffle(r0, r1, vl4{2, 3, 6, 7});
}

}  // namespace KK_ISA
}  // namespace kernelkit
