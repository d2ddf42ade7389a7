// AVX2 build of the quantizer kernels (this file alone is compiled with AVX2 flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "binary/quantizers_impl.h"
