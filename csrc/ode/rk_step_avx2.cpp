// AVX2/FMA build of the Runge-Kutta stage kernels (this file alone gets those flags).
#define KK_ISA avx2
#define KK_ISA_AVX2 1
#include "ode/rk_step_impl.h"
