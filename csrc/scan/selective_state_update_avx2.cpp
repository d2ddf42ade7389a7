// AVX2/FMA/F16C build of the selective_state_update kernel (this file alone has those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "scan/selective_state_update_impl.h"
