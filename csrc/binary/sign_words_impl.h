// Sign words of float elements for one ISA (binary_gemm, binary_conv2d): 1 where x < 0
// (sign(0) = sign(-0.0) = +1), LSB first, 32 elements per int32 word; NaN detected on the way.
// Lines along a contiguous dim take compare masks; lines that are themselves contiguous (the
// packed dim strided, e.g. NCHW channels per pixel) take kAcross lines per vector.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common/dtype.h"
#include "common/popcount.h"
#include "common/tiling.h"
#include "common/vec.h"

namespace kernelkit {
namespace KK_ISA {
namespace sign_words {

// After a binarizing pass whose threads flagged NaNs per operand (first[i], second[i] for
// i < 64): the error naming the operand that held one, first checked first.
inline void throw_nan_operand(const char* op, const bool* first, const char* first_name,
                              const char* second_name) {
  bool in_first = false;
  for (int i = 0; i < 64; ++i) in_first |= first[i];
  throw std::invalid_argument(std::string(op) + ": " + (in_first ? first_name : second_name) +
                              " contains NaN, whose sign is undefined");
}

// f(tag) with tag a null pointer of the element type of a float dtype: the element type as a
// template argument of a generic lambda.
template <class F> void with_float_type(DType d, F&& f) {
  switch (d) {
    case DType::f64: return f(static_cast<double*>(nullptr));
    case DType::f16: return f(static_cast<f16_bits*>(nullptr));
    case DType::bf16: return f(static_cast<bf16_bits*>(nullptr));
    default: return f(static_cast<float*>(nullptr));
  }
}

// ---- sign bits of float elements: 1 where x < 0 (not for -0.0), NaN detected ----

// The raw bits of an element type, the sign bit, and the magnitude above which it is a NaN.
template <class T> struct SignTraits;
template <> struct SignTraits<float> {
  using U = uint32_t;
  static constexpr U sign = 0x80000000u, inf = 0x7f800000u;
};
template <> struct SignTraits<double> {
  using U = uint64_t;
  static constexpr U sign = uint64_t(1) << 63, inf = uint64_t(0x7ff) << 52;
};
template <> struct SignTraits<f16_bits> {
  using U = uint16_t;
  static constexpr U sign = 0x8000u, inf = 0x7c00u;
};
template <> struct SignTraits<bf16_bits> {
  using U = uint16_t;
  static constexpr U sign = 0x8000u, inf = 0x7f80u;
};

template <class T> KK_INLINE typename SignTraits<T>::U raw_bits(const T* p) {
  typename SignTraits<T>::U u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

// x < 0 for the raw bits u: the sign bit and a nonzero magnitude (-0.0 is +1).
template <class T, class U> KK_INLINE bool is_negative(U u) {
  return u > SignTraits<T>::sign;
}
template <class T, class U> KK_INLINE bool is_nan(U u) {
  return U(u & U(SignTraits<T>::sign - 1)) > SignTraits<T>::inf;
}

// The sign word of n <= 32 elements p[0], p[s], ...; sets nan when one is NaN.
template <class T>
KK_INLINE uint32_t sign_word_strided(const T* p, int64_t s, int64_t n, bool& nan) {
  uint32_t w = 0;
  for (int64_t e = 0; e < n; ++e) {
    const auto u = raw_bits(p + e * s);
    w |= uint32_t(is_negative<T>(u)) << e;
    nan |= is_nan<T>(u);
  }
  return w;
}

// The sign word of 32 contiguous elements (compare masks instead of per-element bits).
template <class T> KK_INLINE uint32_t sign_word(const T* p, bool& nan) {
#if defined(KK_ISA_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 z = _mm512_setzero_ps();
    const __m512 x0 = _mm512_loadu_ps(p), x1 = _mm512_loadu_ps(p + 16);
    nan |= (_mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q))
           != 0;
    return uint32_t(_mm512_cmp_ps_mask(x0, z, _CMP_LT_OQ)) |
           uint32_t(_mm512_cmp_ps_mask(x1, z, _CMP_LT_OQ)) << 16;
  } else if constexpr (std::is_same_v<T, double>) {
    const __m512d z = _mm512_setzero_pd();
    uint32_t w = 0;
    for (int q = 0; q < 4; ++q) {
      const __m512d x = _mm512_loadu_pd(p + 8 * q);
      nan |= _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q) != 0;
      w |= uint32_t(_mm512_cmp_pd_mask(x, z, _CMP_LT_OQ)) << (8 * q);
    }
    return w;
  } else {
    // 16-bit floats: the raw bits compared as unsigned integers, 32 at once.
    const __m512i u = _mm512_loadu_si512(p);
    const __m512i magnitude = _mm512_and_si512(u, _mm512_set1_epi16(0x7fff));
    nan |= _mm512_cmpgt_epu16_mask(magnitude, _mm512_set1_epi16(short(SignTraits<T>::inf))) != 0;
    return uint32_t(_mm512_cmpgt_epu16_mask(u, _mm512_set1_epi16(short(0x8000))));
  }
#elif defined(KK_ISA_AVX2)
  if constexpr (std::is_same_v<T, double>) {
    const __m256d z = _mm256_setzero_pd();
    uint32_t w = 0;
    for (int q = 0; q < 8; ++q) {
      const __m256d x = _mm256_loadu_pd(p + 4 * q);
      nan |= _mm256_movemask_pd(_mm256_cmp_pd(x, x, _CMP_UNORD_Q)) != 0;
      w |= uint32_t(_mm256_movemask_pd(_mm256_cmp_pd(x, z, _CMP_LT_OQ))) << (4 * q);
    }
    return w;
  } else {
    // float, or 16-bit floats widened exactly (vec.h): 8 at a time.
    const __m256 z = _mm256_setzero_ps();
    uint32_t w = 0;
    for (int q = 0; q < 4; ++q) {
      const __m256 x = load_as<float>(p + 8 * q);
      nan |= _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0;
      w |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(x, z, _CMP_LT_OQ))) << (8 * q);
    }
    return w;
  }
#else
  return sign_word_strided(p, 1, 32, nan);
#endif
}

// Vectors of raw bits across lines (lines contiguous, the packed dim strided).
constexpr int kAcross = 16;
typedef uint32_t WordLanes __attribute__((vector_size(kAcross * 4)));

template <class T> KK_INLINE WordLanes negative_lanes(const T* p, WordLanes& nan) {
  using U = typename SignTraits<T>::U;
  typedef U Lanes __attribute__((vector_size(kAcross * sizeof(U))));
  Lanes u;
  std::memcpy(&u, p, sizeof u);
  const Lanes magnitude = u & U(SignTraits<T>::sign - 1);
  nan |= __builtin_convertvector(magnitude > SignTraits<T>::inf, WordLanes);
  return __builtin_convertvector(u > SignTraits<T>::sign, WordLanes);  // -1 where negative
}

// A view of float elements to binarize along one dim: element e of line l at
// p + l * line_stride + e * elem_stride, n elements per line.
template <class T> struct FloatLines {
  const T* p;
  int64_t line_stride, elem_stride, n;
};

// Lines [l0, l1) of x into pack_signs words: word w of line l at out.p[l * out.line_stride +
// w * out.word_stride]. Returns whether a NaN was seen.
template <class T>
bool binarize_lines(const FloatLines<T>& x, int64_t l0, int64_t l1, int32_t* out,
                    int64_t out_line_stride, int64_t out_word_stride) {
  bool nan = false;
  const int64_t words = ceil_div(x.n, 32), full = x.n / 32;
  int64_t l = l0;
  if (x.line_stride == 1 && x.elem_stride != 1) {
    // Lines contiguous (e.g. the columns of a row-major B): kAcross lines per vector.
    WordLanes nan_lanes{};
    for (; l + kAcross <= l1; l += kAcross) {
      for (int64_t w = 0; w < words; ++w) {
        WordLanes bits{};
        const int64_t e1 = std::min<int64_t>(32, x.n - 32 * w);
        for (int64_t e = 0; e < e1; ++e)
          bits |= negative_lanes(x.p + l + (32 * w + e) * x.elem_stride, nan_lanes) &
                  (1u << e);
        for (int j = 0; j < kAcross; ++j)
          out[(l + j) * out_line_stride + w * out_word_stride] = int32_t(bits[j]);
      }
    }
    for (int j = 0; j < kAcross; ++j) nan |= nan_lanes[j] != 0;
  }
  for (; l < l1; ++l) {
    const T* line = x.p + l * x.line_stride;
    int32_t* dst = out + l * out_line_stride;
    int64_t w = 0;
    if (x.elem_stride == 1)
      for (; w < full; ++w) dst[w * out_word_stride] = int32_t(sign_word(line + 32 * w, nan));
    for (; w < words; ++w)
      dst[w * out_word_stride] = int32_t(sign_word_strided(
          line + 32 * w * x.elem_stride, x.elem_stride, std::min<int64_t>(32, x.n - 32 * w),
          nan));
  }
  return nan;
}

}  // namespace sign_words
}  // namespace KK_ISA
}  // namespace kernelkit
