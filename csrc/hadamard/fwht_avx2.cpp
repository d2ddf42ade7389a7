// AVX2/FMA/F16C build of the FWHT kernels (this file alone is compiled with those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "hadamard/fwht_impl.h"
