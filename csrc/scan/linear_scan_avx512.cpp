// AVX-512 (F/BW/VL/DQ) build of the linear scan kernels, forward and backward: the same kernel
// source over vec.h's 512-bit vectors (16 x 16 float / 8 x 8 double block transposes, 16 lanes
// per step when time is strided).
#include "common/avx512_vec_unit.h"
#include "scan/linear_scan_impl.h"
#include "scan/linear_scan_backward_impl.h"
