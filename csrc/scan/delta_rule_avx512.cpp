// AVX-512 build of the delta-rule kernels (F/BW/VL/DQ): the same kernels over vec.h's 512-bit
// vectors, so a 64-wide state row is 4 zmm and a column block of 4 vectors spans it whole.
#include "common/avx512_vec_unit.h"
#include "scan/delta_rule_impl.h"
