// AVX-512 (F/BW/VL/DQ) build of the fused scheduler step over vec.h's 512-bit vectors.
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#define KK_VEC_512 1
// GCC 12 reports its own AVX-512 intrinsics' undefined-vector idiom as maybe uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "schedulers/scheduler_step_impl.h"
