// AVX-512 (F/BW/VL/DQ) build of the 2-D linear scan kernels: the same kernel source over
// vec.h's 512-bit vectors, 16 float lanes per load.
#include "common/avx512_vec_unit.h"
#include "scan/linear_scan_2d_impl.h"
