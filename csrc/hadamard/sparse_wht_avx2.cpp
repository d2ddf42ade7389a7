// AVX2/FMA/POPCNT build of the sparse WHT peeling decoder (this file alone has those flags).
#define KK_ISA avx2
#include "hadamard/sparse_wht_impl.h"
