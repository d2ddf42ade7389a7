// The 512-bit vectors of common/vec.h, for translation units that define KK_VEC_512: Vec<float>
// of 16 lanes and Vec<double> of 8, with the loads and stores of every storage type. Included
// by vec.h only, inside its namespaces.

typedef float vf16 __attribute__((vector_size(64)));
typedef double vd8 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef int64_t vl8 __attribute__((vector_size(64)));
typedef uint32_t vu16 __attribute__((vector_size(64)));
typedef uint16_t vw16 __attribute__((vector_size(32)));

template <> struct Vec<float> {
  using V = vf16;
  static constexpr int W = 16;
  static constexpr int LOG_W = 4;
  static V broadcast(float s) { return V{} + s; }
  // The four butterfly levels inside one register, as the 8-lane form's three (vec.h).
  KK_INLINE static V butterflies(V v) {
    v = __builtin_shuffle(v, vi16{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}) +
        v * V{1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
    v = __builtin_shuffle(v, vi16{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13}) +
        v * V{1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
    v = __builtin_shuffle(v, vi16{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11}) +
        v * V{1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
    v = __builtin_shuffle(v, vi16{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7}) +
        v * V{1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
    return v;
  }
};

template <> struct Vec<double> {
  using V = vd8;
  static constexpr int W = 8;
  static constexpr int LOG_W = 3;
  static V broadcast(double s) { return V{} + s; }
  KK_INLINE static V butterflies(V v) {
    v = __builtin_shuffle(v, vl8{1, 0, 3, 2, 5, 4, 7, 6}) + v * V{1, -1, 1, -1, 1, -1, 1, -1};
    v = __builtin_shuffle(v, vl8{2, 3, 0, 1, 6, 7, 4, 5}) + v * V{1, 1, -1, -1, 1, 1, -1, -1};
    v = __builtin_shuffle(v, vl8{4, 5, 6, 7, 0, 1, 2, 3}) + v * V{1, 1, 1, 1, -1, -1, -1, -1};
    return v;
  }
};

KK_INLINE vf16 load_vec(const float* p, float*) { vf16 v; std::memcpy(&v, p, sizeof v); return v; }
KK_INLINE vd8 load_vec(const double* p, double*) { vd8 v; std::memcpy(&v, p, sizeof v); return v; }

KK_INLINE vf16 load_vec(const bf16_bits* p, float*) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return vf16(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w), 16)));
}

KK_INLINE vf16 load_vec(const f16_bits* p, float*) {
  return vf16(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
}

KK_INLINE void store_vec(float* p, vf16 v) { std::memcpy(p, &v, sizeof v); }
KK_INLINE void store_vec(double* p, vd8 v) { std::memcpy(p, &v, sizeof v); }

KK_INLINE void store_vec(f16_bits* p, vf16 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(__m512(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// 16 bfloat16 values, rounded to nearest even, with vec.h's precondition for store_vec (NaNs
// only from bfloat16 inputs: their low halves are zero).
KK_INLINE void store_vec(bf16_bits* p, vf16 v) {
  const vu16 r = bf16_rounded_words<vu16>(v) >> 16;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(__m512i(r)));
}

// bfloat16 in pairs, 32 values as their even- and odd-indexed halves (vec.h's forms).
KK_INLINE vf16 load_even(const bf16_bits* p) { return bf16_words_half<vu16, vf16, false>(p); }
KK_INLINE vf16 load_odd(const bf16_bits* p) { return bf16_words_half<vu16, vf16, true>(p); }
KK_INLINE vu16 bf16_round_high(vf16 v) { return bf16_rounded_words<vu16>(v); }
KK_INLINE void store_pair(bf16_bits* p, vf16 even, vf16 odd) {
  bf16_store_words<vu16>(p, even, odd);
}

KK_INLINE void store_vec_checked(float* p, vf16 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(double* p, vd8 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(f16_bits* p, vf16 v) { store_vec(p, v); }

// Without store_vec's precondition: NaN lanes quieted and truncated, as vec.h's 8-lane form.
KK_INLINE void store_vec_checked(bf16_bits* p, vf16 v) { store_vec(p, bf16_storable<vu16>(v)); }
