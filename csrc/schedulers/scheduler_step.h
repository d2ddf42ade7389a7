// One fused elementwise step of a diffusion / flow sampler over n contiguous elements:
//
//   conv   = p_x * x + p_m * m                      (the model output converted, e.g. to x0)
//   store  = conv                                   (when store is given: the history ring)
//   out    = c_x * x + c_conv * conv + sum_k c_k * h_k + c_aux * aux
//
// x, m, aux and out are of the sample dtype T (float32/float64/float16/bfloat16); the
// history operands h_k (stored conversions, and noise) and store are of the compute dtype S
// (float64 for float64 samples, float32 otherwise). The coefficients are computed by the
// caller once per step, in float64. out may alias x (an in-place step); no other aliasing.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

constexpr int kSchedulerMaxHistory = 4;

struct SchedulerStepArgs {
  const void* x = nullptr;
  const void* m = nullptr;                         // may be null when p_m == 0
  const void* aux = nullptr;                       // optional, sample dtype
  const void* hist[kSchedulerMaxHistory] = {};     // the first n_hist are read, compute dtype
  int n_hist = 0;
  void* out = nullptr;                             // null: only store is written
  void* store = nullptr;                           // optional, compute dtype
  int64_t n = 0;
  DType dtype = DType::f32;                        // of x, m, aux, out
  double p_x = 0, p_m = 1;
  double c_x = 0, c_conv = 0, c_aux = 0;
  double c_hist[kSchedulerMaxHistory] = {};
  int threads = 1;
};

// Validates (std::invalid_argument, touching no memory on bad arguments) and runs.
void scheduler_step(const SchedulerStepArgs& args, Isa isa);

namespace portable { void scheduler_step_run(const SchedulerStepArgs& args); }
namespace avx2 { void scheduler_step_run(const SchedulerStepArgs& args); }
namespace avx512 { void scheduler_step_run(const SchedulerStepArgs& args); }

}  // namespace kernelkit
