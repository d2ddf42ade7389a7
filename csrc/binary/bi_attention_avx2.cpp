// AVX2 build of the fused bi_attention forward (this file alone is compiled with
// AVX2/FMA/F16C/POPCNT).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "binary/bi_attention_impl.h"
