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
};

template <> struct Vec<double> {
  using V = vd8;
  static constexpr int W = 8;
  static constexpr int LOG_W = 3;
  static V broadcast(double s) { return V{} + s; }
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
  vu16 u;
  std::memcpy(&u, &v, sizeof u);
  const vu16 r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(__m512i(r)));
}

KK_INLINE void store_vec_checked(float* p, vf16 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(double* p, vd8 v) { store_vec(p, v); }
KK_INLINE void store_vec_checked(f16_bits* p, vf16 v) { store_vec(p, v); }

// Without store_vec's precondition: NaN lanes quieted and truncated, as vec.h's 8-lane form.
KK_INLINE void store_vec_checked(bf16_bits* p, vf16 v) { store_vec(p, bf16_storable<vu16>(v)); }
