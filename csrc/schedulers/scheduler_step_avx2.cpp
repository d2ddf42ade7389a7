// AVX2/FMA/F16C build of the fused scheduler step (this file alone has those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "schedulers/scheduler_step_impl.h"
