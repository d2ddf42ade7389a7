// In-register transposes of W x W blocks (8 floats, 4 doubles): rows in, columns out. Shared by
// the kernels that turn a strided dimension into vector lanes (scans, GEMM packing).
#pragma once

#include "common/vec.h"

namespace kernelkit {
namespace KK_ISA {

// Three rounds of two-source shuffles (unpack, 64-bit pairs, 128-bit halves): 24 shuffles.
KK_INLINE void transpose(vf8* r) {
  vf8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], vi8{0, 8, 1, 9, 4, 12, 5, 13});
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], vi8{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4) {
    for (int k = 0; k < 2; ++k) {
      u[i + 2 * k] = __builtin_shuffle(t[i + k], t[i + k + 2], vi8{0, 1, 8, 9, 4, 5, 12, 13});
      u[i + 2 * k + 1] =
          __builtin_shuffle(t[i + k], t[i + k + 2], vi8{2, 3, 10, 11, 6, 7, 14, 15});
    }
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = __builtin_shuffle(u[i], u[i + 4], vi8{0, 1, 2, 3, 8, 9, 10, 11});
    r[i + 4] = __builtin_shuffle(u[i], u[i + 4], vi8{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

KK_INLINE void transpose(vd4* r) {
  const vd4 t0 = __builtin_shuffle(r[0], r[1], vl4{0, 4, 2, 6});
  const vd4 t1 = __builtin_shuffle(r[0], r[1], vl4{1, 5, 3, 7});
  const vd4 t2 = __builtin_shuffle(r[2], r[3], vl4{0, 4, 2, 6});
  const vd4 t3 = __builtin_shuffle(r[2], r[3], vl4{1, 5, 3, 7});
  r[0] = __builtin_shuffle(t0, t2, vl4{0, 1, 4, 5});
  r[1] = __builtin_shuffle(t1, t3, vl4{0, 1, 4, 5});
  r[2] = __builtin_shuffle(t0, t2, vl4{2, 3, 6, 7});
  r[3] = __builtin_shuffle(t1, t3, vl4{2, 3, 6, 7});
}

}  // namespace KK_ISA
}  // namespace kernelkit
