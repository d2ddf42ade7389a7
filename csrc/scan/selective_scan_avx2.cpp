// AVX2/FMA/F16C build of the selective scan kernels (this file alone gets those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "scan/selective_scan_impl.h"
