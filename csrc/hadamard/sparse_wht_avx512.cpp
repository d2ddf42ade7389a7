// AVX-512 build of the sparse WHT peeling decoder (this file alone has those flags).
#define KK_ISA avx512
#include "hadamard/sparse_wht_impl.h"
