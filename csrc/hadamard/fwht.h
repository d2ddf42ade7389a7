// Walsh-Hadamard transform of rows of length n = m * 2**k (Sylvester order, H_m (x) H_{2**k}),
// any of float32/float64/float16/bfloat16, out of place or in place (src == dst).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct FwhtArgs {
  const void* src = nullptr;
  void* dst = nullptr;            // may equal src (in place), with equal row strides
  int64_t rows = 0;
  int64_t n = 0;
  int64_t src_row_stride = 0;     // in elements; rows are contiguous inside
  int64_t dst_row_stride = 0;
  DType dtype = DType::f32;
  int m = 1;                      // odd factor of n: 1, 12, 20, 28 or 40
  const float* had_m = nullptr;   // symmetric m x m +-1 matrix, row-major; unused when m == 1
  double scale = 1.0;
  int threads = 1;
};

// Validates (throws std::invalid_argument, never touches memory on bad arguments) and runs.
void fwht(const FwhtArgs& args, Isa isa);

namespace portable { void fwht_run(const FwhtArgs& args); }
namespace avx2 { void fwht_run(const FwhtArgs& args); }
namespace avx512 { void fwht_run(const FwhtArgs& args); }

}  // namespace kernelkit
