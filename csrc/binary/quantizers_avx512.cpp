// AVX-512 build of the quantizer kernels (F/BW/VL/DQ + the binary family's extensions).
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#include "binary/quantizers_impl.h"
