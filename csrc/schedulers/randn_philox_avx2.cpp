// AVX2/FMA/F16C build of the Philox normal generator (this file alone has those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "schedulers/randn_philox_impl.h"
