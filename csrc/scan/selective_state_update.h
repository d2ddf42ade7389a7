// One decode step of Mamba's selective SSM (mamba-ssm's selective_state_update): updates the
// state in place and writes out. Layout with heads: state (batch, nheads, dim, dstate).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct SsuArgs {
  void* state = nullptr;          // (batch, nheads, dim, dstate), dstate contiguous
  int64_t state_stride_batch = 0;  // in elements
  int64_t state_stride_head = 0;
  int64_t state_stride_dim = 0;
  // (batch, nheads, dim), contiguous, of x_dtype; z may be null.
  const void* x = nullptr;
  const void* dt = nullptr;
  const void* z = nullptr;
  void* out = nullptr;
  // Parameters, float64 when the state is float64, else float32:
  const void* A = nullptr;        // (nheads, dim, dstate) at the strides below
  int64_t A_stride_head = 0;
  int64_t A_stride_dim = 0;
  int64_t A_stride_dstate = 1;    // 1, or 0 (one value per row: one exp per row)
  const void* B = nullptr;        // (batch, ngroups, dstate), contiguous
  const void* C = nullptr;
  const void* D = nullptr;        // (nheads, dim), contiguous, or null
  const void* dt_bias = nullptr;  // (nheads, dim), contiguous, or null
  int64_t batch = 0;
  int64_t nheads = 0;
  int64_t dim = 0;
  int64_t dstate = 0;
  int64_t ngroups = 1;
  DType state_dtype = DType::f32;  // f32, f16, bf16 or f64
  DType x_dtype = DType::f32;      // f64 exactly when the state is f64
  bool dt_softplus = false;
  int threads = 1;
};

// Validates (throws std::invalid_argument, touching no memory on bad arguments) and runs.
void selective_state_update(const SsuArgs& args, Isa isa);

namespace portable { void selective_state_update_run(const SsuArgs& args); }
namespace avx2 { void selective_state_update_run(const SsuArgs& args); }
namespace avx512 { void selective_state_update_run(const SsuArgs& args); }

}  // namespace kernelkit
