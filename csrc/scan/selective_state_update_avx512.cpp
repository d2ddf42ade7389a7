// AVX-512 (F/BW/VL/DQ) build of the selective state update: the same kernel source over
// vec.h's 512-bit vectors, so a state row of 16 is one zmm register.
#include "common/avx512_vec_unit.h"
#include "scan/selective_state_update_impl.h"
