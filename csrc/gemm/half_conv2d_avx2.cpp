// AVX2/FMA/F16C build of the implicit-GEMM convolution (this file alone has those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "gemm/half_conv2d_impl.h"
