// AVX-512 (F/DQ) build of the Runge-Kutta stage kernels: the same kernels over vec.h's
// 512-bit vectors, 16 float or 8 double lanes per load.
#include "common/avx512_vec_unit.h"
#include "ode/rk_step_impl.h"
