// AVX-512 (F/DQ) build of the Runge-Kutta stage kernels: the same kernels over vec.h's
// 512-bit vectors (KK_VEC_512), 16 float or 8 double lanes per load.
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#define KK_VEC_512 1
// GCC 12 reports its own AVX-512 intrinsics' undefined-vector idiom as maybe uninitialized
// once they are inlined; every value is defined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "ode/rk_step_impl.h"
