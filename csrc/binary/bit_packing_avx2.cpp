// AVX2 build of the bit packing kernels (this file alone is compiled with AVX2 flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "binary/bit_packing_impl.h"
