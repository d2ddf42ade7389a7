// Bit packing kernels (bit_packing.h), written once and compiled per ISA (bit_packing.cpp,
// _avx2.cpp, _avx512.cpp). Pack reads every element once and writes its bit once: along a
// contiguous dim a word is two AVX-512 compare masks (four AVX2 movemasks) of the raw bits;
// across a contiguous inner dim (packing a non-last dim) every vector lane ORs row j's bit into
// its own partial word (16-bit formats: two 16-bit halves), the 32 rows read in order against
// an L1-resident chunk of partial words. Unpack mirrors both: one mask blend (AVX-512) or
// variable shift (AVX2) per vector of +-1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(KK_ISA_AVX2) || defined(KK_ISA_AVX512)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "binary/bit_packing.h"
#include "common/parallel.h"

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including binary/bit_packing_impl.h"
#endif

#ifndef KK_INLINE
#define KK_INLINE inline __attribute__((always_inline))
#endif

namespace kernelkit {
namespace KK_ISA {
namespace bit_packing_detail {

// Calls that move fewer bytes (elements read by pack, written by unpack) run on one thread.
constexpr int64_t kParallelBytes = int64_t(256) << 10;
// Along lines: a task covers up to this many words of one line (16 Ki elements).
constexpr int64_t kLineBlock = 512;
// Across lanes: a task builds one row of words of up to this many lanes, whose partial words
// (8 KiB) stay in L1 while its 32 rows of elements stream past.
constexpr int64_t kLaneChunk = 4096;

inline int64_t ceil_div(int64_t v, int64_t m) { return (v + m - 1) / m; }

// ---- element formats ---------------------------------------------------------------------

// Raw bits of each element type, its +infinity (magnitudes above it are NaN) and +1.
template <class T> struct Format;
template <> struct Format<float> {
  using U = uint32_t;
  static constexpr U inf = 0x7f800000u, one = 0x3f800000u;
};
template <> struct Format<double> {
  using U = uint64_t;
  static constexpr U inf = 0x7ff0000000000000ull, one = 0x3ff0000000000000ull;
};
template <> struct Format<f16_bits> {
  using U = uint16_t;
  static constexpr U inf = 0x7c00, one = 0x3c00;
};
template <> struct Format<bf16_bits> {
  using U = uint16_t;
  static constexpr U inf = 0x7f80, one = 0x3f80;
};
template <class T> using Raw = typename Format<T>::U;
template <class T> constexpr Raw<T> kSign = Raw<T>(Raw<T>(1) << (8 * sizeof(Raw<T>) - 1));

template <class T> KK_INLINE Raw<T> raw_bits(const T* p) {
  Raw<T> u;
  std::memcpy(&u, p, sizeof u);
  return u;
}

// x < 0 decided on the raw bits: the sign set and a nonzero magnitude (-0.0 packs as +1).
// Integer tests, so that a denormals-are-zero mode (torch.set_flush_denormal) cannot turn a
// tiny negative into +1.
template <class T> KK_INLINE bool is_negative(Raw<T> u) { return u > kSign<T>; }
template <class T> KK_INLINE bool is_nan(Raw<T> u) {
  return Raw<T>(u & Raw<T>(~kSign<T>)) > Format<T>::inf;
}

// The word of count <= 32 elements x[0], x[stride], ..; nan |= whether one is NaN.
template <class T>
KK_INLINE uint32_t sign_word_strided(const T* x, int64_t stride, int count, bool& nan) {
  uint32_t word = 0;
  bool any_nan = false;
  for (int j = 0; j < count; ++j) {
    const Raw<T> u = raw_bits(x + j * stride);
    word |= uint32_t(is_negative<T>(u)) << j;
    any_nan |= is_nan<T>(u);
  }
  nan |= any_nan;
  return word;
}

// count <= 32 elements x[0], x[stride], .. of +-1 from the bits of word.
template <class T> KK_INLINE void unpack_word_strided(uint32_t word, int count, T* x,
                                                      int64_t stride) {
  for (int j = 0; j < count; ++j) {
    const Raw<T> u = Raw<T>(Format<T>::one | ((word >> j) & 1 ? kSign<T> : 0));
    std::memcpy(x + j * stride, &u, sizeof u);
  }
}

// ---- one word of 32 contiguous elements, per ISA -------------------------------------------

// Whether a NaN went by: compare masks ORed together (ISA lanes), and flags of scalar code.
struct NanSeen {
  bool seen = false;
#if defined(KK_ISA_AVX512)
  uint32_t lanes = 0;
  bool any() const { return seen || lanes != 0; }
#elif defined(KK_ISA_AVX2)
  __m256i lanes = _mm256_setzero_si256();
  KK_INLINE void add(__m256i m) { lanes = _mm256_or_si256(lanes, m); }
  bool any() const { return seen || !_mm256_testz_si256(lanes, lanes); }
#else
  bool any() const { return seen; }
#endif
  KK_INLINE void merge(const NanSeen& other) { seen |= other.any(); }
};

#if defined(KK_ISA_AVX512)

// The word of the elements x[j] for the set bits j of `valid` (masked loads read no others).
// NaN: one unordered compare per pair of vectors.
template <class T> KK_INLINE uint32_t sign_word_masked(const T* x, uint32_t valid,
                                                       NanSeen& nan) {
  if constexpr (sizeof(T) == 4) {
    const __m512i sign = _mm512_set1_epi32(int(kSign<float>));
    const __m512i a = _mm512_maskz_loadu_epi32(__mmask16(valid), x);
    const __m512i b = _mm512_maskz_loadu_epi32(__mmask16(valid >> 16), x + 16);
    nan.lanes |= _mm512_cmp_ps_mask(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b),
                                    _CMP_UNORD_Q);
    return uint32_t(_mm512_cmpgt_epu32_mask(a, sign)) |
           uint32_t(_mm512_cmpgt_epu32_mask(b, sign)) << 16;
  } else if constexpr (sizeof(T) == 8) {
    const __m512i sign = _mm512_set1_epi64(int64_t(kSign<double>));
    uint32_t word = 0;
    for (int q = 0; q < 4; q += 2) {
      const __m512i a = _mm512_maskz_loadu_epi64(__mmask8(valid >> (8 * q)), x + 8 * q);
      const __m512i b = _mm512_maskz_loadu_epi64(__mmask8(valid >> (8 * q + 8)), x + 8 * q + 8);
      nan.lanes |= _mm512_cmp_pd_mask(_mm512_castsi512_pd(a), _mm512_castsi512_pd(b),
                                      _CMP_UNORD_Q);
      word |= uint32_t(_mm512_cmpgt_epu64_mask(a, sign)) << (8 * q) |
              uint32_t(_mm512_cmpgt_epu64_mask(b, sign)) << (8 * q + 8);
    }
    return word;
  } else {
    const __m512i u = _mm512_maskz_loadu_epi16(__mmask32(valid), x);
    const __m512i magnitude = _mm512_and_si512(u, _mm512_set1_epi16(0x7fff));
    nan.lanes |= _mm512_cmpgt_epu16_mask(magnitude, _mm512_set1_epi16(short(Format<T>::inf)));
    return _mm512_cmpgt_epu16_mask(u, _mm512_set1_epi16(short(kSign<T>)));
  }
}

template <class T> KK_INLINE uint32_t sign_word(const T* x, NanSeen& nan) {
  return sign_word_masked(x, ~0u, nan);
}
template <class T> KK_INLINE uint32_t sign_word_tail(const T* x, int count, NanSeen& nan) {
  return sign_word_masked(x, (1u << count) - 1, nan);
}

// The +-1 values of the bits of word into x[j] for the set bits j of `valid` (FULL: all 32,
// plain stores).
template <bool FULL, class T> KK_INLINE void unpack_word_masked(uint32_t word, uint32_t valid,
                                                                T* x) {
  if constexpr (sizeof(T) == 4) {
    const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
    const __m512 lo = _mm512_mask_blend_ps(__mmask16(word), one, minus);
    const __m512 hi = _mm512_mask_blend_ps(__mmask16(word >> 16), one, minus);
    float* out = reinterpret_cast<float*>(x);
    if constexpr (FULL) {
      _mm512_storeu_ps(out, lo);
      _mm512_storeu_ps(out + 16, hi);
    } else {
      _mm512_mask_storeu_ps(out, __mmask16(valid), lo);
      _mm512_mask_storeu_ps(out + 16, __mmask16(valid >> 16), hi);
    }
  } else if constexpr (sizeof(T) == 8) {
    const __m512d one = _mm512_set1_pd(1.0), minus = _mm512_set1_pd(-1.0);
    double* out = reinterpret_cast<double*>(x);
    for (int q = 0; q < 4; ++q) {
      const __m512d v = _mm512_mask_blend_pd(__mmask8(word >> (8 * q)), one, minus);
      if constexpr (FULL) {
        _mm512_storeu_pd(out + 8 * q, v);
      } else {
        _mm512_mask_storeu_pd(out + 8 * q, __mmask8(valid >> (8 * q)), v);
      }
    }
  } else {
    const __m512i one = _mm512_set1_epi16(short(Format<T>::one));
    const __m512i minus = _mm512_set1_epi16(short(Format<T>::one | kSign<T>));
    const __m512i v = _mm512_mask_blend_epi16(__mmask32(word), one, minus);
    if constexpr (FULL) {
      _mm512_storeu_si512(x, v);
    } else {
      _mm512_mask_storeu_epi16(x, __mmask32(valid), v);
    }
  }
}

template <class T> KK_INLINE void unpack_word(uint32_t word, T* x) {
  unpack_word_masked<true>(word, ~0u, x);
}
template <class T> KK_INLINE void unpack_word_tail(uint32_t word, int count, T* x) {
  unpack_word_masked<false>(word, (1u << count) - 1, x);
}

#else  // AVX2 and portable

#if defined(KK_ISA_AVX2)

// The bits of one 256-bit vector of elements (8 float, 4 double, 16 half): a movemask of an
// integer compare (see is_negative), the 16-bit masks packed to bytes first; NaN by an
// unordered compare (16-bit: magnitude above infinity).
template <class T> KK_INLINE uint32_t sign_bits_vector(const T* p, NanSeen& nan) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i zero = _mm256_setzero_si256();
  if constexpr (sizeof(T) == 2) {
    nan.add(_mm256_cmpgt_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x7fff)),
                               _mm256_set1_epi16(short(Format<T>::inf))));
    const __m256i sign = _mm256_set1_epi16(short(kSign<T>));
    const __m256i neg = _mm256_cmpgt_epi16(_mm256_xor_si256(v, sign), zero);
    return uint32_t(_mm_movemask_epi8(
        _mm_packs_epi16(_mm256_castsi256_si128(neg), _mm256_extracti128_si256(neg, 1))));
  } else if constexpr (sizeof(T) == 4) {
    const __m256 f = _mm256_castsi256_ps(v);
    nan.add(_mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
    const __m256i sign = _mm256_set1_epi32(int(kSign<float>));
    return uint32_t(_mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_xor_si256(v, sign), zero))));
  } else {
    const __m256d d = _mm256_castsi256_pd(v);
    nan.add(_mm256_castpd_si256(_mm256_cmp_pd(d, d, _CMP_UNORD_Q)));
    const __m256i sign = _mm256_set1_epi64x(int64_t(kSign<double>));
    return uint32_t(_mm256_movemask_pd(
        _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_xor_si256(v, sign), zero))));
  }
}

template <class T> constexpr int kPerVector = 32 / int(sizeof(T));

template <class T> KK_INLINE uint32_t sign_word(const T* x, NanSeen& nan) {
  uint32_t word = 0;
  for (int q = 0; q < 32; q += kPerVector<T>) word |= sign_bits_vector(x + q, nan) << q;
  return word;
}

// A tail of count < 32 elements: whole vectors, then the rest one by one.
template <class T> KK_INLINE uint32_t sign_word_tail(const T* x, int count, NanSeen& nan) {
  uint32_t word = 0;
  int q = 0;
  for (; q + kPerVector<T> <= count; q += kPerVector<T>) word |= sign_bits_vector(x + q, nan) << q;
  return word | sign_word_strided(x + q, 1, count - q, nan.seen) << q;
}

#else

template <class T> KK_INLINE uint32_t sign_word(const T* x, NanSeen& nan) {
  return sign_word_strided(x, 1, 32, nan.seen);
}
template <class T> KK_INLINE uint32_t sign_word_tail(const T* x, int count, NanSeen& nan) {
  return sign_word_strided(x, 1, count, nan.seen);
}

#endif

#if defined(KK_ISA_AVX2)

// One 256-bit vector of +-1 (kPerVector<T> values) from the low bits of `bits`: 32- and 64-bit
// lanes shift their bit to the sign (vpsllv), 16-bit lanes (no such shift in AVX2) compare
// their bit of the broadcast half-word.
template <class T> KK_INLINE void unpack_bits_vector(uint32_t bits, T* x) {
  __m256i v;
  if constexpr (sizeof(T) == 2) {
    const __m256i select = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048,
                                             4096, 8192, 16384, short(0x8000));
    const __m256i half = _mm256_set1_epi16(short(bits));
    v = _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(half, select), select),
                         _mm256_set1_epi16(short(kSign<T>)));
  } else if constexpr (sizeof(T) == 4) {
    const __m256i shift = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    v = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(int(bits)), shift),
                         _mm256_set1_epi32(int(kSign<float>)));
  } else {
    const __m256i shift = _mm256_setr_epi64x(63, 62, 61, 60);
    v = _mm256_and_si256(_mm256_sllv_epi64(_mm256_set1_epi64x(int64_t(bits)), shift),
                         _mm256_set1_epi64x(int64_t(kSign<double>)));
  }
  const Raw<T> one = Format<T>::one;
  __m256i ones;
  if constexpr (sizeof(T) == 2) ones = _mm256_set1_epi16(short(one));
  else if constexpr (sizeof(T) == 4) ones = _mm256_set1_epi32(int(one));
  else ones = _mm256_set1_epi64x(int64_t(one));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x), _mm256_or_si256(v, ones));
}

template <class T> KK_INLINE void unpack_word(uint32_t word, T* x) {
  for (int q = 0; q < 32; q += kPerVector<T>) unpack_bits_vector(word >> q, x + q);
}

// A tail of count < 32 values: whole vectors, then the rest one by one.
template <class T> KK_INLINE void unpack_word_tail(uint32_t word, int count, T* x) {
  int q = 0;
  for (; q + kPerVector<T> <= count; q += kPerVector<T>) unpack_bits_vector(word >> q, x + q);
  unpack_word_strided(word >> q, count - q, x + q, 1);
}

#else

template <class T> KK_INLINE void unpack_word(uint32_t word, T* x) {
  unpack_word_strided(word, 32, x, 1);
}
template <class T> KK_INLINE void unpack_word_tail(uint32_t word, int count, T* x) {
  unpack_word_strided(word, count, x, 1);
}

#endif

#endif

// ---- along one line -------------------------------------------------------------------------

// Words [w0, w1) of a line of n elements x[0], x[stride], ..
template <class T>
KK_INLINE void pack_line_words(const T* x, int64_t stride, int64_t n, int64_t w0, int64_t w1,
                               int32_t* words, int64_t word_stride, NanSeen& nan) {
  NanSeen seen;  // a local stays in registers: the stores of words cannot alias it
  int64_t w = w0;
  if (stride == 1) {
    const int64_t full = std::min(w1, n / 32);
    for (; w < full; ++w) words[w * word_stride] = int32_t(sign_word(x + 32 * w, seen));
    if (w < w1)
      words[w * word_stride] = int32_t(sign_word_tail(x + 32 * w, int(n - 32 * w), seen));
  } else {
    for (; w < w1; ++w)
      words[w * word_stride] = int32_t(sign_word_strided(
          x + 32 * w * stride, stride, int(std::min<int64_t>(32, n - 32 * w)), seen.seen));
  }
  nan.merge(seen);
}

template <class T>
KK_INLINE void unpack_line_words(const int32_t* words, int64_t word_stride, int64_t w0,
                                 int64_t w1, int64_t n, T* x, int64_t stride) {
  int64_t w = w0;
  if (stride == 1) {
    const int64_t full = std::min(w1, n / 32);
    for (; w < full; ++w) unpack_word(uint32_t(words[w * word_stride]), x + 32 * w);
    if (w < w1) unpack_word_tail(uint32_t(words[w * word_stride]), int(n - 32 * w), x + 32 * w);
    return;
  }
  for (; w < w1; ++w)
    unpack_word_strided(uint32_t(words[w * word_stride]),
                        int(std::min<int64_t>(32, n - 32 * w)), x + 32 * w * stride, stride);
}

// ---- across lanes (GCC vector extensions: 512-, 256- or 128-bit code per ISA) ----------------

#if defined(KK_ISA_AVX512)
constexpr int kVectorBytes = 64;
#elif defined(KK_ISA_AVX2)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

// Pack's lane vectors for element type T: each lane collects the bits of its word a Part at a
// time (16 bits for 16-bit formats, whose compares then stay 16 bits wide; else all 32), as
// many lanes as fit one register of the wider of T and Part (GCC scalarizes compares and
// conversions of vectors wider than a register).
template <class T> struct PackLanes {
  using Part = std::conditional_t<sizeof(T) == 2, uint16_t, uint32_t>;
  static constexpr int kPartBits = 8 * int(sizeof(Part));
  static constexpr int N = kVectorBytes / int(std::max(sizeof(T), sizeof(Part)));
  typedef Part Parts __attribute__((vector_size(sizeof(Part) * N)));
  typedef Raw<T> Raws __attribute__((vector_size(sizeof(Raw<T>) * N)));
};

// Unpack's: int32 words in, as many lanes as fit one register of the wider of T and the word.
template <class T> struct UnpackLanes {
  static constexpr int N = kVectorBytes / int(std::max(sizeof(T), sizeof(uint32_t)));
  typedef uint32_t Words __attribute__((vector_size(4 * N)));
  typedef Raw<T> Raws __attribute__((vector_size(sizeof(Raw<T>) * N)));
};

template <class V, class P> KK_INLINE V load_lanes(const P* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V, class P> KK_INLINE void store_lanes(P* p, V v) { std::memcpy(p, &v, sizeof v); }

// All ones in the lanes whose element (of PackLanes<T>::N from p) is negative; NaN lanes into nan.
template <class T>
KK_INLINE typename PackLanes<T>::Parts negative_lanes(const T* p,
                                                      typename PackLanes<T>::Parts& nan) {
  using Parts = typename PackLanes<T>::Parts;
  const auto u = load_lanes<typename PackLanes<T>::Raws>(p);
  nan |= __builtin_convertvector((u & Raw<T>(~kSign<T>)) > Format<T>::inf, Parts);
  return __builtin_convertvector(u > kSign<T>, Parts);
}

// UnpackLanes<T>::N values of +-1 from bit j of each lane's word, stored as raw bits of T.
template <class T> KK_INLINE void store_signs(T* p, typename UnpackLanes<T>::Words words, int j) {
  using Raws = typename UnpackLanes<T>::Raws;
  constexpr int kTop = 8 * sizeof(Raw<T>) - 1;
  const Raws bit = __builtin_convertvector((words >> j) & 1u, Raws);
  store_lanes(p, Raws(bit << kTop) | Format<T>::one);
}

// words[i * lane_stride] = the word of lane i from its parts (part k at parts[k][i]).
template <class Part>
KK_INLINE void join_parts(const Part (*parts)[kLaneChunk], int count, int64_t lanes,
                          int32_t* words, int64_t lane_stride) {
  constexpr int kBits = 8 * int(sizeof(Part));
  auto word = [&](int64_t i) {
    uint32_t w = parts[0][i];
    if constexpr (kBits < 32)
      for (int k = 1; k * kBits < count; ++k) w |= uint32_t(parts[k][i]) << (k * kBits);
    return int32_t(w);
  };
  if (lane_stride == 1) {
    for (int64_t i = 0; i < lanes; ++i) words[i] = word(i);
  } else {
    for (int64_t i = 0; i < lanes; ++i) words[i * lane_stride] = word(i);
  }
}

// One row of words of `lanes` <= kLaneChunk lanes, from count <= 32 rows of elements x,
// x + n_stride, ..: lane i into words[i * lane_stride]. Rows are read in order (the hardware
// prefetchers follow ascending addresses), each ORing its bit into the lanes' partial words.
template <class T>
void pack_lanes_word(const T* x, int count, int64_t n_stride, int64_t lanes, int32_t* words,
                     int64_t lane_stride, NanSeen& nan) {
  using L = PackLanes<T>;
  using Part = typename L::Part;
  constexpr int kN = L::N, kBits = L::kPartBits;
  alignas(64) Part partial[32 / kBits][kLaneChunk];
  const int64_t vec_end = lanes / kN * kN;
  typename L::Parts nan_lanes{};
  for (int j = 0; j < count; ++j) {
    const T* row = x + j * n_stride;
    Part* part = partial[j / kBits];
    const Part bit = Part(1u << (j % kBits));
    if (j % kBits == 0) {
      for (int64_t i = 0; i < vec_end; i += kN)
        store_lanes(part + i, negative_lanes(row + i, nan_lanes) & bit);
    } else {
      for (int64_t i = 0; i < vec_end; i += kN)
        store_lanes(part + i, load_lanes<typename L::Parts>(part + i) |
                                  (negative_lanes(row + i, nan_lanes) & bit));
    }
  }
  join_parts<Part>(partial, count, vec_end, words, lane_stride);
  for (int64_t i = vec_end; i < lanes; ++i)
    words[i * lane_stride] = int32_t(sign_word_strided(x + i, n_stride, count, nan.seen));
  for (int l = 0; l < kN; ++l) nan.seen |= nan_lanes[l] != 0;
}

// The mirror: rows j < count of x (x + j * n_stride, `lanes` values each) from one row of
// words, lane i at words[i * lane_stride].
template <class T>
void unpack_lanes_word(const int32_t* words, int64_t lane_stride, int count, int64_t lanes,
                       T* x, int64_t n_stride) {
  alignas(64) uint32_t gathered[kLaneChunk];
  const uint32_t* src = reinterpret_cast<const uint32_t*>(words);
  if (lane_stride != 1) {
    for (int64_t i = 0; i < lanes; ++i) gathered[i] = uint32_t(words[i * lane_stride]);
    src = gathered;
  }
  constexpr int kN = UnpackLanes<T>::N;
  const int64_t vec_end = lanes / kN * kN;
  for (int j = 0; j < count; ++j) {
    T* row = x + j * n_stride;
    for (int64_t i = 0; i < vec_end; i += kN)
      store_signs(row + i, load_lanes<typename UnpackLanes<T>::Words>(src + i), j);
    for (int64_t i = vec_end; i < lanes; ++i) unpack_word_strided(src[i] >> j, 1, row + i, 1);
  }
}

// ---- the tasks of one call, and the threads ----------------------------------------------

// A call's work seen from the elements' side (x for pack, the output for unpack): along lines
// (one per (outer, inner) pair, tasks of kLineBlock words) or across a contiguous inner dim
// (tasks of one word row of kLaneChunk lanes).
struct Walk {
  int64_t outer, n, inner, words;
  Strides3 elems, word_strides;
  bool across;

  Walk(int64_t outer_, int64_t n_, int64_t inner_, Strides3 elems_, Strides3 words_)
      : outer(outer_), n(n_), inner(inner_), words(ceil_div(n_, 32)), elems(elems_),
        word_strides(words_) {
    // Lines strided along n but side by side in memory (a transposed matrix packed along its
    // last dim): the outer dim becomes the lanes.
    if (inner == 1 && outer > 1 && elems.outer == 1 && n > 1 && elems.along != 1) {
      std::swap(outer, inner);
      std::swap(elems.outer, elems.inner);
      std::swap(word_strides.outer, word_strides.inner);
    }
    across = inner > 1 && elems.inner == 1 && (n == 1 || elems.along != 1);
  }
  int64_t blocks() const {
    return across ? ceil_div(inner, kLaneChunk) : ceil_div(words, kLineBlock);
  }
  int64_t tasks() const { return (across ? outer * words : outer * inner) * blocks(); }
};

// Task t of a walk as (outer index, word or inner index, block), stepped in order.
struct TaskCursor {
  int64_t a, b, c;
  int64_t nb, nc;
  TaskCursor(int64_t t, int64_t nb_, int64_t nc_)
      : a(t / (nb_ * nc_)), b(t / nc_ % nb_), c(t % nc_), nb(nb_), nc(nc_) {}
  void next() {
    if (++c < nc) return;
    c = 0;
    if (++b < nb) return;
    b = 0;
    ++a;
  }
};

// body(t0, t1) on contiguous ranges of [0, tasks), one per thread; the OR of the results.
template <class Body> bool run_split(int64_t tasks, int threads, const Body& body) {
  if (threads <= 1 || tasks <= 1) return body(int64_t(0), tasks);
  bool any = false;
#if defined(_OPENMP)
  ParallelErrors errors;
#pragma omp parallel num_threads(int(std::min<int64_t>(threads, tasks))) reduction(|| : any)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    errors.run([&] { any = body(tasks * t / nt, tasks * (t + 1) / nt); });
  }
  errors.rethrow();
#else
  any = body(int64_t(0), tasks);
#endif
  return any;
}

inline int walk_threads(int threads, int64_t bytes) { return bytes < kParallelBytes ? 1 : threads; }

template <class T> bool pack_typed(const PackSignsArgs& a) {
  const Walk wk(a.outer, a.n, a.inner, a.x_strides, a.word_strides);
  const T* x = static_cast<const T*>(a.x);
  const Strides3 xs = wk.elems, ws = wk.word_strides;
  const int64_t blocks = wk.blocks();
  const int64_t bytes = a.outer * a.n * a.inner * int64_t(sizeof(T));
  // Contiguous lines of one block each (rows of a matrix packed along its last dim): a plain
  // loop, which short rows (n = 33: two words a line) notice.
  const bool rows = !wk.across && wk.inner == 1 && blocks == 1 && xs.along == 1;
  return run_split(wk.tasks(), walk_threads(a.threads, bytes), [&](int64_t t0, int64_t t1) {
    NanSeen nan;
    if (rows) {
      for (int64_t o = t0; o < t1; ++o)
        pack_line_words(x + o * xs.outer, 1, wk.n, 0, wk.words, a.words + o * ws.outer,
                        ws.along, nan);
      return nan.any();
    }
    TaskCursor at(t0, wk.across ? wk.words : wk.inner, blocks);
    for (int64_t t = t0; t < t1; ++t, at.next()) {
      if (wk.across) {
        const int64_t w = at.b, i0 = at.c * kLaneChunk;
        pack_lanes_word(x + at.a * xs.outer + 32 * w * xs.along + i0,
                        int(std::min<int64_t>(32, wk.n - 32 * w)), xs.along,
                        std::min(kLaneChunk, wk.inner - i0),
                        a.words + at.a * ws.outer + w * ws.along + i0 * ws.inner, ws.inner, nan);
      } else {
        const int64_t w0 = at.c * kLineBlock;
        pack_line_words(x + at.a * xs.outer + at.b * xs.inner, xs.along, wk.n, w0,
                        std::min(wk.words, w0 + kLineBlock),
                        a.words + at.a * ws.outer + at.b * ws.inner, ws.along, nan);
      }
    }
    return nan.any();
  });
}

template <class T> void unpack_typed(const UnpackSignsArgs& a) {
  const Walk wk(a.outer, a.n, a.inner, a.out_strides, a.word_strides);
  T* x = static_cast<T*>(a.out);
  const Strides3 xs = wk.elems, ws = wk.word_strides;
  const int64_t blocks = wk.blocks();
  const int64_t bytes = a.outer * a.n * a.inner * int64_t(sizeof(T));
  const bool rows = !wk.across && wk.inner == 1 && blocks == 1 && xs.along == 1;  // see pack
  run_split(wk.tasks(), walk_threads(a.threads, bytes), [&](int64_t t0, int64_t t1) {
    if (rows) {
      for (int64_t o = t0; o < t1; ++o)
        unpack_line_words(a.words + o * ws.outer, ws.along, 0, wk.words, wk.n, x + o * xs.outer,
                          1);
      return false;
    }
    TaskCursor at(t0, wk.across ? wk.words : wk.inner, blocks);
    for (int64_t t = t0; t < t1; ++t, at.next()) {
      if (wk.across) {
        const int64_t w = at.b, i0 = at.c * kLaneChunk;
        unpack_lanes_word(a.words + at.a * ws.outer + w * ws.along + i0 * ws.inner, ws.inner,
                          int(std::min<int64_t>(32, wk.n - 32 * w)),
                          std::min(kLaneChunk, wk.inner - i0),
                          x + at.a * xs.outer + 32 * w * xs.along + i0, xs.along);
      } else {
        const int64_t w0 = at.c * kLineBlock;
        unpack_line_words(a.words + at.a * ws.outer + at.b * ws.inner, ws.along, w0,
                          std::min(wk.words, w0 + kLineBlock), wk.n,
                          x + at.a * xs.outer + at.b * xs.inner, xs.along);
      }
    }
    return false;
  });
}

}  // namespace bit_packing_detail

bool pack_signs_run(const PackSignsArgs& args) {
  using namespace bit_packing_detail;
  switch (args.dtype) {
    case DType::f32: return pack_typed<float>(args);
    case DType::f64: return pack_typed<double>(args);
    case DType::f16: return pack_typed<f16_bits>(args);
    case DType::bf16: return pack_typed<bf16_bits>(args);
  }
  return false;
}

void unpack_signs_run(const UnpackSignsArgs& args) {
  using namespace bit_packing_detail;
  switch (args.dtype) {
    case DType::f32: return unpack_typed<float>(args);
    case DType::f64: return unpack_typed<double>(args);
    case DType::f16: return unpack_typed<f16_bits>(args);
    case DType::bf16: return unpack_typed<bf16_bits>(args);
  }
}

template <class T>
bool pack_sign_line(const T* x, int64_t n, int64_t stride, int32_t* words, int64_t word_stride) {
  bit_packing_detail::NanSeen nan;
  bit_packing_detail::pack_line_words(x, stride, n, 0, bit_packing_detail::ceil_div(n, 32),
                                      words, word_stride, nan);
  return nan.any();
}

template <class T>
bool pack_sign_lanes(const T* x, int64_t n, int64_t n_stride, int64_t lanes, int32_t* words,
                     int64_t word_stride) {
  using namespace bit_packing_detail;
  NanSeen nan;
  for (int64_t w = 0; 32 * w < n; ++w)
    for (int64_t i0 = 0; i0 < lanes; i0 += kLaneChunk)
      pack_lanes_word(x + 32 * w * n_stride + i0, int(std::min<int64_t>(32, n - 32 * w)),
                      n_stride, std::min(kLaneChunk, lanes - i0), words + w * word_stride + i0,
                      1, nan);
  return nan.any();
}

#define KK_BIT_PACKING_INSTANTIATE(T)                                                        \
  template bool pack_sign_line<T>(const T*, int64_t, int64_t, int32_t*, int64_t);           \
  template bool pack_sign_lanes<T>(const T*, int64_t, int64_t, int64_t, int32_t*, int64_t);
KK_BIT_PACKING_INSTANTIATE(float)
KK_BIT_PACKING_INSTANTIATE(double)
KK_BIT_PACKING_INSTANTIATE(f16_bits)
KK_BIT_PACKING_INSTANTIATE(bf16_bits)
#undef KK_BIT_PACKING_INSTANTIATE

}  // namespace KK_ISA
}  // namespace kernelkit
