// AVX-512 (F/BW/VL/DQ) build of the Philox normal generator over vec.h's 512-bit vectors.
#include "common/avx512_vec_unit.h"
#include "schedulers/randn_philox_impl.h"
