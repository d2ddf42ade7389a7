// Elementwise math over the vector types of common/vec.h (exp2, exp, softplus, sigmoid, silu)
// and a transposing lane reduction, for 256-bit vectors and, under KK_VEC_512, 512-bit ones. float vectors use polynomials (relative error <= 3e-7,
// enough for fp32 compute); double vectors call the C library per lane, since the float64
// path exists for checking, where accuracy matters more than speed.
#pragma once

#include <cmath>

#include "common/vec.h"

namespace kernelkit {
namespace KK_ISA {
inline namespace KK_VEC_NS {

// a * b + c, fused where the ISA has FMA. GCC also contracts plain a * b + c in C++ when it
// sees one (its default -ffp-contract=fast), but not across the calls and casts of these
// helpers, so the fused forms the kernels rely on are spelled out.
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

#if defined(KK_VEC_512)
KK_INLINE vf16 fmadd(vf16 a, vf16 b, vf16 c) { return vf16(_mm512_fmadd_ps(a, b, c)); }
KK_INLINE vd8 fmadd(vd8 a, vd8 b, vd8 c) { return vd8(_mm512_fmadd_pd(a, b, c)); }
// (Declared here for the templates below; vec512_math_impl.h defines them.)
KK_INLINE vf16 exp_vec(vf16 x);
KK_INLINE vd8 exp_vec(vd8 x);
#endif

// 2**f for f in [-0.5, 0.5]: degree-6 fit of relative error (1.9e-9, 9.6e-8 evaluated in
// float); degree 5 (2.3e-7) biased long scans, where dA ~ 1 multiplies the state thousands
// of times.
template <class VF> KK_INLINE VF exp2_unit_poly(VF f) {
  constexpr float kCoef[7] = {1.0f, 0.6931471824645996f, 0.24022646248340607f,
                              0.05550328642129898f, 0.009618489071726799f,
                              0.0013399930903688073f, 0.00015345810970757157f};
  VF p = VF{} + kCoef[6];
  for (int i = 5; i >= 0; --i) p = fmadd(p, f, VF{} + kCoef[i]);
  return p;
}

template <class To, class From> KK_INLINE To bit_cast_vec(From v) {
  To r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// 2**x for x already clamped to [-127, 128] (or NaN): x + (1.5 * 2**23 + 127) rounds x to the
// nearest integer n and leaves n + 127 in the low mantissa bits: shifted left by 23 they are
// the exponent field of 2**n (n = 128 gives the inf pattern, n = -127 zero), and f = x - n
// lies in [-0.5, 0.5]. VU: the unsigned vector of VF's size.
template <class VF, class VU> KK_INLINE VF exp2_clamped(VF x) {
  const VF magic = VF{} + 12583039.0f;
  const VF shifted = x + magic;
  const VF f = x - (shifted - magic);
  return exp2_unit_poly(f) * bit_cast_vec<VF>(bit_cast_vec<VU>(shifted) << 23);
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
  return exp2_clamped<vf8, vu8>(x);
}

// 2**(x8 / 8) for x8 known to lie in [-1000, 1000] (no NaN): the exponent of the hot loops.
// k = round(x8) splits it as 2**(k >> 3) * 2**((k & 7) / 8) * 2**(g / 8), g in [-0.5, 0.5]:
// the middle factor comes from an 8-entry table (a lane permute), the last from a cubic
// (relative error 2.5e-8; 1.5e-7 in all, evaluated in float). It takes 6 multiplier-port
// operations where exp2_vec takes 10, and the scan loops are bound by those ports.
// The bits of 2**(j / 8) minus j << 20, so that adding k20 leaves 2**(k / 8) exactly.
constexpr uint32_t kEighthsTable[8] = {0x3f800000u, 0x3f7b95c2u, 0x3f7837f0u, 0x3f75fed7u,
                                       0x3f7504f3u, 0x3f75672au, 0x3f7744fdu, 0x3f7ac0c7u};

// x8 + 1.5 * 2**23 leaves k = round(x8) in the low mantissa bits of `shifted` (two's
// complement); shifted left by 20, they are (k >> 3) << 23, the exponent of 2**(k >> 3), plus
// (k & 7) << 20. table_at(shifted): kEighthsTable[k & 7] per lane (a lane permute).
template <class VF, class VU, class TableAt>
KK_INLINE VF exp2_eighths_from(VF x8, const TableAt& table_at) {
  const VF magic = VF{} + 12582912.0f;
  const VF shifted = x8 + magic;
  const VF g = x8 - (shifted - magic);
  const VU k20 = bit_cast_vec<VU>(shifted) << 20;
  const VF scale = bit_cast_vec<VF>(table_at(shifted) + k20);
  constexpr float c1 = 0.08664340525865555f, c2 = 0.0037540255580097437f,
                  c3 = 0.00010839106107596308f;
  const VF p = fmadd(fmadd(fmadd(VF{} + c3, g, VF{} + c2), g, VF{} + c1), g, VF{} + 1.0f);
  return p * scale;
}

KK_INLINE vf8 exp2_eighths_in_range(vf8 x8) {
#if defined(KK_ISA_AVX2)
  // Keeps a product passed as x8 out of the adds below: fused into them, it would take two
  // multiplier-port FMAs in place of one multiply and two adds on other ports.
  asm("" : "+x"(x8));
#endif
  return exp2_eighths_from<vf8, vu8>(x8, [](vf8 shifted) {
    vu8 table;
    std::memcpy(&table, kEighthsTable, sizeof table);
#if defined(KK_ISA_AVX2)
    return bit_cast_vec<vu8>(_mm256_permutevar8x32_epi32(bit_cast_vec<__m256i>(table),
                                                         bit_cast_vec<__m256i>(shifted)));
#else
    return vu8(__builtin_shuffle(table, bit_cast_vec<vu8>(shifted)));  // index mod 8
#endif
  });
}

KK_INLINE vd4 exp2_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = std::exp2(x[i]);
  return x;
}

KK_INLINE vf8 exp_vec(vf8 x) { return exp2_vec(x * 1.4426950408889634f); }

KK_INLINE vd4 exp2_eighths_in_range(vd4 x8) { return exp2_vec(x8 * 0.125); }

KK_INLINE vd4 exp_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = std::exp(x[i]);
  return x;
}

// log(1 + e) for e in [0, 1] as e * P(e), P of degree 8 fitted to log1p(e) / e (relative
// error 2.5e-8, 2e-7 evaluated in float): multiplies only, where the classic reduction to
// atanh takes two divisions, each worth several multiplies of issue time.
template <class VF> KK_INLINE VF log1p_unit(VF e) {
  constexpr float kCoef[9] = {1.0f, -0.49999552965164185f, 0.33320340514183044f,
                              -0.24852921068668365f, 0.19145016372203827f,
                              -0.1374640017747879f, 0.07920803874731064f,
                              -0.030109260231256485f, 0.005383627023547888f};
  VF p = VF{} + kCoef[8];
  for (int i = 7; i >= 0; --i) p = fmadd(p, e, VF{} + kCoef[i]);
  return p * e;
}

// softplus(x) = log(1 + e**x), and x itself above 20 (PyTorch's and Mamba's threshold).
template <class VF> KK_INLINE VF softplus_float(VF x) {
  const VF pos = x > 0.0f ? x : VF{};
  const VF neg_abs = x > 0.0f ? -x : x;
  const VF r = pos + log1p_unit(exp_vec(neg_abs));
  return x > 20.0f ? x : r;
}

KK_INLINE vf8 softplus_vec(vf8 x) { return softplus_float(x); }

KK_INLINE vd4 softplus_vec(vd4 x) {
  for (int i = 0; i < 4; ++i) x[i] = x[i] > 20.0 ? x[i] : std::log1p(std::exp(x[i]));
  return x;
}

// 1 / (1 + e**-x): e**-x overflows to inf for x < -88, giving 0 as it should.
template <class V> KK_INLINE V sigmoid_vec(V x) { return 1.0f / (1.0f + exp_vec(-x)); }

template <class V> KK_INLINE V silu_vec(V x) { return x * sigmoid_vec(x); }

// The sum of one vector's lanes as a tree of shuffles and adds (3 levels for 8 floats, 2 for
// 4 doubles) rather than a chain of scalar adds.
KK_INLINE float sum_lanes(vf8 v) {
  v += __builtin_shuffle(v, vi8{4, 5, 6, 7, 0, 1, 2, 3});
  v += __builtin_shuffle(v, vi8{2, 3, 0, 1, 6, 7, 4, 5});
  v += __builtin_shuffle(v, vi8{1, 0, 3, 2, 5, 4, 7, 6});
  return v[0];
}

KK_INLINE double sum_lanes(vd4 v) {
  v += __builtin_shuffle(v, vl4{2, 3, 0, 1});
  v += __builtin_shuffle(v, vl4{1, 0, 3, 2});
  return v[0];
}

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

#if defined(KK_VEC_512)
#include "common/vec512_math_impl.h"
#endif

}  // namespace KK_VEC_NS
}  // namespace KK_ISA
}  // namespace kernelkit
