// AVX-512 build of the FWHT kernels (F/BW/VL/DQ): the same kernels over vec.h's 512-bit
// vectors, so the first pass does 4 levels inside each register and a pass's 16 registers
// hold twice the columns.
#include "common/avx512_vec_unit.h"
#include "hadamard/fwht_impl.h"
