// Population counts of bit vectors, per 64-bit lane, for the popcount kernels of the binary
// family: VPOPCNTQ under AVX-512 (the binary family's AVX-512 build requires VPOPCNTDQ, see
// binary/binary_isa.h), a nibble table (vpshufb) summed by vpsadbw under
// AVX2, the compiler's popcount per lane otherwise. BitVec supports ^, &, ~ and + (GCC vector
// extensions), so one kernel template serves every ISA.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(KK_ISA_AVX2) || defined(KK_ISA_AVX512)
#include <immintrin.h>
#endif

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including common/popcount.h"
#endif

#ifndef KK_INLINE
#define KK_INLINE inline __attribute__((always_inline))
#endif

namespace kernelkit {
namespace KK_ISA {

#if defined(KK_ISA_AVX512)
typedef uint64_t BitVec __attribute__((vector_size(64)));
#elif defined(KK_ISA_AVX2)
typedef uint64_t BitVec __attribute__((vector_size(32)));
#else
typedef uint64_t BitVec __attribute__((vector_size(16)));
#endif

// 64-bit words per BitVec.
constexpr int kBitVecWords = int(sizeof(BitVec) / sizeof(uint64_t));

KK_INLINE BitVec load_bits(const uint64_t* p) {
  BitVec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

KK_INLINE void store_bits(uint64_t* p, BitVec v) { std::memcpy(p, &v, sizeof v); }

KK_INLINE BitVec broadcast_bits(uint64_t w) {
  BitVec v;
  for (int i = 0; i < kBitVecWords; ++i) v[i] = w;
  return v;
}

// The number of set bits of each 64-bit lane.
KK_INLINE BitVec popcount_lanes(BitVec v) {
#if defined(KK_ISA_AVX512)
  return BitVec(_mm512_popcnt_epi64(__m512i(v)));
#elif defined(KK_ISA_AVX2)
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i x = __m256i(v);
  const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
  const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
  return BitVec(_mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256()));
#else
  BitVec r;
  for (int i = 0; i < kBitVecWords; ++i) r[i] = uint64_t(__builtin_popcountll(v[i]));
  return r;
#endif
}

// The sum of a BitVec's lanes (each a count, so no overflow concern).
KK_INLINE uint64_t sum_lanes(BitVec v) {
  uint64_t s = 0;
  for (int i = 0; i < kBitVecWords; ++i) s += v[i];
  return s;
}

KK_INLINE int popcount_word(uint64_t w) { return __builtin_popcountll(w); }

}  // namespace KK_ISA
}  // namespace kernelkit
