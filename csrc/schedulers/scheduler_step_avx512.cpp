// AVX-512 (F/BW/VL/DQ) build of the fused scheduler step over vec.h's 512-bit vectors.
#include "common/avx512_vec_unit.h"
#include "schedulers/scheduler_step_impl.h"
