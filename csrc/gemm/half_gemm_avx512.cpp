// AVX-512 build of the half GEMM (F/BW/VL/DQ; the bfloat16 pair tile's micro-kernel adds
// AVX512_BF16 on its own, by a target attribute, and runs only where the CPU has it).
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#include "gemm/half_gemm_impl.h"
