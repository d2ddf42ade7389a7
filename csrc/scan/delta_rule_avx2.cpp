// AVX2/FMA/F16C build of the delta-rule kernels (this file alone is compiled with those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "scan/delta_rule_impl.h"
