// The 512-bit forms of common/vec_math.h's functions (KK_VEC_512 translation units), the same
// algorithms as the 256-bit ones. Included by vec_math.h only, inside its namespaces.

KK_INLINE vf16 exp2_vec(vf16 x) {
  // max/min return their second operand when either is NaN: a NaN passes through.
  x = vf16(_mm512_min_ps(_mm512_set1_ps(128.0f), _mm512_max_ps(_mm512_set1_ps(-127.0f), x)));
  return exp2_clamped<vf16, vu16>(x);
}

KK_INLINE vf16 exp2_eighths_in_range(vf16 x8) {
  asm("" : "+v"(x8));  // as the 256-bit form: keeps a product out of the adds
  return exp2_eighths_from<vf16, vu16>(x8, [](vf16 shifted) {
    // The 8 entries twice: vpermd reads 4 index bits, of which k & 7 are the low 3.
    vu16 table;
    std::memcpy(&table, kEighthsTable, sizeof kEighthsTable);
    std::memcpy(reinterpret_cast<char*>(&table) + sizeof kEighthsTable, kEighthsTable,
                sizeof kEighthsTable);
    return bit_cast_vec<vu16>(_mm512_permutexvar_epi32(bit_cast_vec<__m512i>(shifted),
                                                        bit_cast_vec<__m512i>(table)));
  });
}

KK_INLINE vf16 exp_vec(vf16 x) { return exp2_vec(x * 1.4426950408889634f); }

KK_INLINE vf16 softplus_vec(vf16 x) { return softplus_float(x); }

KK_INLINE vd8 exp2_vec(vd8 x) {
  for (int i = 0; i < 8; ++i) x[i] = std::exp2(x[i]);
  return x;
}

KK_INLINE vd8 exp2_eighths_in_range(vd8 x8) { return exp2_vec(x8 * 0.125); }

KK_INLINE vd8 exp_vec(vd8 x) {
  for (int i = 0; i < 8; ++i) x[i] = std::exp(x[i]);
  return x;
}

KK_INLINE vd8 softplus_vec(vd8 x) {
  for (int i = 0; i < 8; ++i) x[i] = x[i] > 20.0 ? x[i] : std::log1p(std::exp(x[i]));
  return x;
}

// The sum of one vector's lanes: 4 shuffle + add levels for 16 floats, 3 for 8 doubles.
KK_INLINE float sum_lanes(vf16 v) {
  v += __builtin_shuffle(v, vi16{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  v += __builtin_shuffle(v, vi16{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
  v += __builtin_shuffle(v, vi16{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
  v += __builtin_shuffle(v, vi16{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
  return v[0];
}

KK_INLINE double sum_lanes(vd8 v) {
  v += __builtin_shuffle(v, vl8{4, 5, 6, 7, 0, 1, 2, 3});
  v += __builtin_shuffle(v, vl8{2, 3, 0, 1, 6, 7, 4, 5});
  v += __builtin_shuffle(v, vl8{1, 0, 3, 2, 5, 4, 7, 6});
  return v[0];
}

// 16 vectors in, one out whose lane j is the sum of the lanes of v[j]: four levels, each
// adding the two halves of every vector's partial sums while packing two vectors into one.
KK_INLINE vf16 sum_lanes_transposed(const vf16* v) {
  vf16 a[16];
  for (int i = 0; i < 16; ++i) a[i] = v[i];
  // Level 1: 8 partials of each vector, vectors 2i and 2i + 1 in the halves of a[i].
  for (int i = 0; i < 8; ++i)
    a[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
  // Level 2: 4 partials each, four vectors per register.
  for (int i = 0; i < 4; ++i)
    a[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27}) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31});
  // Level 3: 2 partials each, eight vectors per register.
  for (int i = 0; i < 2; ++i)
    a[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29}) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1],
                             vi16{2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31});
  // Level 4: the sums, lane j for vector j.
  return __builtin_shuffle(a[0], a[1],
                           vi16{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}) +
         __builtin_shuffle(a[0], a[1],
                           vi16{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31});
}

KK_INLINE vd8 sum_lanes_transposed(const vd8* v) {
  vd8 a[8];
  for (int i = 0; i < 8; ++i) a[i] = v[i];
  for (int i = 0; i < 4; ++i)
    a[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], vl8{0, 1, 2, 3, 8, 9, 10, 11}) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1], vl8{4, 5, 6, 7, 12, 13, 14, 15});
  for (int i = 0; i < 2; ++i)
    a[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], vl8{0, 1, 4, 5, 8, 9, 12, 13}) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1], vl8{2, 3, 6, 7, 10, 11, 14, 15});
  return __builtin_shuffle(a[0], a[1], vl8{0, 2, 4, 6, 8, 10, 12, 14}) +
         __builtin_shuffle(a[0], a[1], vl8{1, 3, 5, 7, 9, 11, 13, 15});
}
