// AVX-512 (F/BW/VL/DQ) build of the 2-D linear scan kernels: the same kernel source over vec.h's
// 512-bit vectors (KK_VEC_512), 16 float lanes of V per load.
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#define KK_VEC_512 1
// GCC 12 reports its own AVX-512 intrinsics' undefined-vector idiom (`__Y = __Y`) as
// (maybe) uninitialized once they are inlined into these kernels; every value is defined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "scan/linear_scan_2d_impl.h"
