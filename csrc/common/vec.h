// Vectors of float (8 lanes) or double (4 lanes), 256 bits, through GCC/Clang vector
// extensions, plus loads and stores that convert from/to the storage types. Included by every
// kernel translation unit inside its ISA namespace: compiled with -mavx2 -mfma -mf16c the same
// code becomes AVX2 (and F16C conversions are used); without, it is portable (two SSE halves).
//
// A translation unit that defines KK_VEC_512 (an AVX-512 one) gets 512-bit vectors instead:
// Vec<float> of 16 lanes, Vec<double> of 8, the same loads, stores and math (vec_math.h), so a
// kernel written over Vec<S>, VecT<S>, load_as and store_vec runs unchanged on zmm registers.
// The two widths live in different inline namespaces (v256 / v512): AVX-512 units of either
// width link together without one's inline functions standing in for the other's.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/half_scalar.h"

#if defined(KK_ISA_AVX2)
#include <immintrin.h>
#endif

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including common/vec.h"
#endif

#define KK_INLINE inline __attribute__((always_inline))

#if defined(KK_VEC_512) && !defined(KK_ISA_AVX512)
#error "KK_VEC_512 needs an AVX-512 translation unit (KK_ISA_AVX512)"
#endif

#if defined(KK_VEC_512)
#define KK_VEC_NS v512
#else
#define KK_VEC_NS v256
#endif

namespace kernelkit {
namespace KK_ISA {
inline namespace KK_VEC_NS {

typedef float vf8 __attribute__((vector_size(32)));
typedef double vd4 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef int64_t vl4 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));
typedef uint16_t vw8 __attribute__((vector_size(16)));

template <class S> struct Vec;

// Float lanes v with every NaN quieted and its low half cleared, for bfloat16 stores of values
// from any source: a NaN whose payload sits in the low half would otherwise round into the
// exponent. VU: the unsigned 32-bit lanes of v's size.
template <class VU, class VF> KK_INLINE VF bf16_storable(VF v) {
  VU u;
  std::memcpy(&u, &v, sizeof u);
  const VU nan = (VU)((u & 0x7fffffffu) > 0x7f800000u);
  const VU safe = (u & ~nan) | ((u | 0x00400000u) & 0xffff0000u & nan);
  VF w;
  std::memcpy(&w, &safe, sizeof w);
  return w;
}

// bfloat16 in pairs, written once over a width's vector types VU (32-bit words) and VF
// (floats); each width's load_even / load_odd / bf16_round_high / store_pair wrap them (see
// "bfloat16 in pairs" below). Two load functions, not one with output references: those
// would pin the caller's registers to the stack.
template <class VU, class VF, bool ODD> KK_INLINE VF bf16_words_half(const bf16_bits* p) {
  VU w;
  std::memcpy(&w, p, sizeof w);
  w = ODD ? (w & 0xffff0000u) : (w << 16);
  VF v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

// Float lanes rounded to nearest even at bit 16. Only for floats computed from bfloat16
// inputs: every NaN among them then has a zero low half (a bf16 widened by a shift; x86 and
// Arm arithmetic pass an input NaN's payload on, or make the default NaN 0x?fc00000), so
// adding the rounding bias cannot carry out of a NaN's low half, and no NaN test is needed.
// Infinities stay infinite; finite values that round past the largest bfloat16 become
// infinities, as round-to-nearest wants.
template <class VU, class VF> KK_INLINE VU bf16_rounded_words(VF v) {
  VU u;
  std::memcpy(&u, &v, sizeof u);
  return u + 0x7fffu + ((u >> 16) & 1u);
}

// Stores 2W bfloat16 values from their even- and odd-indexed halves as floats (same rounding
// and precondition).
template <class VU, class VF> KK_INLINE void bf16_store_words(bf16_bits* p, VF even, VF odd) {
  const VU w =
      (bf16_rounded_words<VU>(even) >> 16) | (bf16_rounded_words<VU>(odd) & 0xffff0000u);
  std::memcpy(p, &w, sizeof w);
}

#if !defined(KK_VEC_512)  // else the 512-bit Vec, loads and stores of vec512_impl.h
template <> struct Vec<float> {
  using V = vf8;
  static constexpr int W = 8;
  static constexpr int LOG_W = 3;
  static V broadcast(float s) { return V{s, s, s, s, s, s, s, s}; }
  // The three butterfly levels inside one register: swap partners, then t + v * (+-1) is
  // a + b in the low lane of each pair and a - b in the high one (one shuffle + one FMA).
  KK_INLINE static V butterflies(V v) {
    v = __builtin_shuffle(v, vi8{1, 0, 3, 2, 5, 4, 7, 6}) + v * V{1, -1, 1, -1, 1, -1, 1, -1};
    v = __builtin_shuffle(v, vi8{2, 3, 0, 1, 6, 7, 4, 5}) + v * V{1, 1, -1, -1, 1, 1, -1, -1};
    v = __builtin_shuffle(v, vi8{4, 5, 6, 7, 0, 1, 2, 3}) + v * V{1, 1, 1, 1, -1, -1, -1, -1};
    return v;
  }
};

template <> struct Vec<double> {
  using V = vd4;
  static constexpr int W = 4;
  static constexpr int LOG_W = 2;
  static V broadcast(double s) { return V{s, s, s, s}; }
  KK_INLINE static V butterflies(V v) {
    v = __builtin_shuffle(v, vl4{1, 0, 3, 2}) + v * V{1, -1, 1, -1};
    v = __builtin_shuffle(v, vl4{2, 3, 0, 1}) + v * V{1, 1, -1, -1};
    return v;
  }
};
#else
#include "common/vec512_impl.h"
#endif  // !KK_VEC_512

template <class S> using VecT = typename Vec<S>::V;

#if !defined(KK_VEC_512)
// ---- loads: W elements of storage type T as a vector of compute type S ----

KK_INLINE vf8 load_vec(const float* p, float*) { vf8 v; std::memcpy(&v, p, sizeof v); return v; }
KK_INLINE vd4 load_vec(const double* p, double*) { vd4 v; std::memcpy(&v, p, sizeof v); return v; }

KK_INLINE vf8 load_vec(const bf16_bits* p, float*) {
#if defined(KK_ISA_AVX2)
  const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w), 16));
#else
  vw8 w;
  std::memcpy(&w, p, sizeof w);
  vu8 u = __builtin_convertvector(w, vu8) << 16;
  vf8 v;
  std::memcpy(&v, &u, sizeof v);
  return v;
#endif
}

KK_INLINE vf8 load_vec(const f16_bits* p, float*) {
#if defined(KK_ISA_AVX2)
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  vf8 v;
  for (int i = 0; i < 8; ++i) v[i] = to_float(p[i]);
  return v;
#endif
}

#endif  // !KK_VEC_512

template <class S, class T> KK_INLINE VecT<S> load_as(const T* p) {
  return load_vec(p, static_cast<S*>(nullptr));
}

// ---- stores: a vector of compute type S into W elements of storage type T ----

KK_INLINE void store_vec(float* p, vf8 v) { std::memcpy(p, &v, sizeof v); }
KK_INLINE void store_vec(double* p, vd4 v) { std::memcpy(p, &v, sizeof v); }

KK_INLINE void store_vec(f16_bits* p, vf8 v) {
#if defined(KK_ISA_AVX2)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  for (int i = 0; i < 8; ++i) p[i] = to_f16(v[i]);
#endif
}

// ---- bfloat16 in pairs: 16 values as their even- and odd-indexed halves ----
// A bf16 is the top half of a float, so a 32-bit word holding bf16 values x[2l] (low half)
// and x[2l+1] (high half) gives both as floats with one shift and one mask: no shuffle.

#if !defined(KK_VEC_512)
KK_INLINE vf8 load_even(const bf16_bits* p) { return bf16_words_half<vu8, vf8, false>(p); }
KK_INLINE vf8 load_odd(const bf16_bits* p) { return bf16_words_half<vu8, vf8, true>(p); }
#endif  // !KK_VEC_512
KK_INLINE vu8 bf16_round_high(vf8 v) { return bf16_rounded_words<vu8>(v); }
KK_INLINE void store_pair(bf16_bits* p, vf8 even, vf8 odd) {
  bf16_store_words<vu8>(p, even, odd);
}

// 8 bfloat16 values in natural order (same rounding, same precondition as store_pair).
KK_INLINE void store_vec(bf16_bits* p, vf8 v) {
  const vu8 r = bf16_round_high(v) >> 16;
#if defined(KK_ISA_AVX2)
  // r < 2^16 in every lane, so the saturating pack is exact; packus works per 128-bit lane.
  const __m256i packed = _mm256_packus_epi32(__m256i(r), __m256i(r));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
#else
  const vw8 w = __builtin_convertvector(r, vw8);
  std::memcpy(p, &w, sizeof w);
#endif
}

// ---- stores of values from any source (NaN payloads of every kind kept quiet) ----

KK_INLINE void store_vec_checked(float* p, vf8 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(double* p, vd4 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(f16_bits* p, vf8 v) { store_vec(p, v); }

// store_vec for bfloat16 without its precondition: a NaN whose payload sits in the low half
// would round into the exponent, so NaN lanes are quieted and truncated instead.
KK_INLINE void store_vec_checked(bf16_bits* p, vf8 v) { store_vec(p, bf16_storable<vu8>(v)); }

}  // namespace v256 / v512
}  // namespace KK_ISA
}  // namespace kernelkit
