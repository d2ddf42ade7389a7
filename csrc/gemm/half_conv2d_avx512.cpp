// AVX-512 build of half_conv2d (F/BW/VL/DQ): the GEMM core's 6 x 64 float tile.
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#include "gemm/half_conv2d_impl.h"
