// Index arithmetic of blocked kernels and the OpenMP thread index (0 without OpenMP).
#pragma once

#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including common/tiling.h"
#endif

namespace kernelkit {
namespace KK_ISA {

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
inline int64_t ceil_div(int64_t v, int64_t m) { return (v + m - 1) / m; }

inline int omp_thread_index() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace KK_ISA
}  // namespace kernelkit
