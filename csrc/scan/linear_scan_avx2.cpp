// AVX2/FMA/F16C build of the linear scan kernels, forward and backward (this file alone is
// compiled with those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "scan/linear_scan_impl.h"
#include "scan/linear_scan_backward_impl.h"
