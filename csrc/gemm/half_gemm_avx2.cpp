// AVX2/FMA/F16C build of the half GEMM (this file alone is compiled with those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "gemm/half_gemm_impl.h"
