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

// (vector + scalar: one vpbroadcastq; a per-lane loop compiles to masked inserts.)
KK_INLINE BitVec broadcast_bits(uint64_t w) { return BitVec{} + w; }

#if defined(KK_ISA_AVX2) && !defined(KK_ISA_AVX512)
// The number of set bits of each byte, by a 16-entry nibble table (vpshufb).
KK_INLINE __m256i popcount_bytes(__m256i x) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
  const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
  return _mm256_add_epi8(lo, hi);
}
#endif

// The number of set bits of each 64-bit lane.
KK_INLINE BitVec popcount_lanes(BitVec v) {
#if defined(KK_ISA_AVX512)
  return BitVec(_mm512_popcnt_epi64(__m512i(v)));
#elif defined(KK_ISA_AVX2)
  return BitVec(_mm256_sad_epu8(popcount_bytes(__m256i(v)), _mm256_setzero_si256()));
#elif defined(__x86_64__) && !defined(__POPCNT__)
  // Baseline x86-64 has no popcnt instruction (__builtin_popcountll is a library call there):
  // bit-parallel sums of pairs, nibbles, bytes, on both lanes at once.
  v -= (v >> 1) & 0x5555555555555555ull;
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (v * 0x0101010101010101ull) >> 56;
#else
  BitVec r;
  for (int i = 0; i < kBitVecWords; ++i) r[i] = uint64_t(__builtin_popcountll(v[i]));
  return r;
#endif
}

// Partial counts for long sums of popcounts (the GEMM micro-kernels): partial_popcount(v) may
// be added (as a BitVec, +) kPartialSums times before widen_partial turns the sum into
// per-64-bit-lane counts. Under AVX2 the partial counts are per byte (the nibble table without
// its vpsadbw: each byte <= 8, so 31 sums stay below 256 and never carry into the next byte),
// which saves the vpsadbw of every popcount_lanes; elsewhere they are the lane counts.
#if defined(KK_ISA_AVX2) && !defined(KK_ISA_AVX512)
constexpr int64_t kPartialSums = 31;

KK_INLINE BitVec partial_popcount(BitVec v) { return BitVec(popcount_bytes(__m256i(v))); }

KK_INLINE BitVec widen_partial(BitVec v) {
  return BitVec(_mm256_sad_epu8(__m256i(v), _mm256_setzero_si256()));
}
#else
constexpr int64_t kPartialSums = int64_t(1) << 40;

KK_INLINE BitVec partial_popcount(BitVec v) { return popcount_lanes(v); }

KK_INLINE BitVec widen_partial(BitVec v) { return v; }
#endif

// The number of set bits of each 32-bit half-lane, in place (a BitVec viewed as uint32 lanes).
KK_INLINE BitVec popcount_lanes32(BitVec v) {
#if defined(KK_ISA_AVX512)
  return BitVec(_mm512_popcnt_epi32(__m512i(v)));
#elif defined(KK_ISA_AVX2)
  // Byte counts, then the two bytes of each 16-bit half, then the two halves of each 32 bits.
  const __m256i bytes = popcount_bytes(__m256i(v));
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  return BitVec(_mm256_madd_epi16(_mm256_maddubs_epi16(bytes, ones8), ones16));
#else
  BitVec r;
  for (int i = 0; i < kBitVecWords; ++i) {
    const uint64_t w = v[i];
    r[i] = uint64_t(__builtin_popcount(uint32_t(w))) |
           uint64_t(__builtin_popcount(uint32_t(w >> 32))) << 32;
  }
  return r;
#endif
}

// A BitVec of one 32-bit word in every 32-bit half-lane.
KK_INLINE BitVec broadcast_bits32(uint32_t w) { return broadcast_bits(uint64_t(w) << 32 | w); }

// The sum of a BitVec's lanes (each a count, so no overflow concern).
KK_INLINE uint64_t sum_lanes(BitVec v) {
  uint64_t s = 0;
  for (int i = 0; i < kBitVecWords; ++i) s += v[i];
  return s;
}

KK_INLINE int popcount_word(uint64_t w) { return __builtin_popcountll(w); }

}  // namespace KK_ISA
}  // namespace kernelkit
