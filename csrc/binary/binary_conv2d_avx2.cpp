// AVX2 build of binary_conv2d (this file alone is compiled with AVX2/FMA/F16C/POPCNT).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "binary/binary_conv2d_impl.h"
