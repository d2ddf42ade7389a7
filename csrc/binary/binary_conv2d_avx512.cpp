// AVX-512 build of binary_conv2d (F/BW/VL/DQ + VPOPCNTDQ + BITALG; CMakeLists.txt).
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#include "binary/binary_conv2d_impl.h"
