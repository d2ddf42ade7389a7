// AVX-512 build of the fused bi_attention forward (F/BW/VL/DQ + VPOPCNTDQ + BITALG;
// CMakeLists.txt).
#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#include "binary/bi_attention_impl.h"
