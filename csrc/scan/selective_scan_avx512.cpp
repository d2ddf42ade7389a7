// AVX-512 build of the selective scan kernels (F/BW/VL/DQ): the same kernels over vec.h's
// 512-bit vectors, so a state of N = 16 is one zmm register.
#include "common/avx512_vec_unit.h"
#include "scan/selective_scan_impl.h"
