// Fused Runge-Kutta stage kernels for odeint: a stage input (or dense output) as one weighted
// sum over the stored stages, and a step's solution, error estimate and error-ratio reduction
// as one pass. Raw pointers and sizes in; the step-size control stays with the caller.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

constexpr int kRkMaxSources = 32;
constexpr int kRkMaxSegments = 64;

// out = w[0] * src[0] + (sum_{j >= 1} w[j] * src[j]): the sum over the stages first, then the
// base, as torchdiffeq's `y0 + sum(k * (a * dt))`. Every array holds n values of dtype.
struct RkCombineArgs {
  void* out = nullptr;
  const void* const* srcs = nullptr;
  const double* w = nullptr;
  int nsrc = 0;
  int64_t n = 0;
  DType dtype = DType::f32;
  int threads = 1;
};

// One step's end. y1 = y0 + sum_j b[j] * k[j] is written when write_y1 (else y1 is read: the
// last stage's input of a first-same-as-last method); err = sum_j e[j] * k[j];
// stats[2s] = sum over segment s of (err / (atol + rtol * max(|y0|, |y1|)))^2 and
// stats[2s + 1] = sum over segment s of 0 * y1 (0, or NaN where y1 is not finite).
// Segment s is [seg_end[s-1], seg_end[s]) (seg_end[nseg-1] == n). Sums are taken over
// fixed chunks in a fixed order: the result does not depend on the thread count.
struct RkStepEndArgs {
  const void* y0 = nullptr;
  void* y1 = nullptr;
  bool write_y1 = false;
  const void* const* ks = nullptr;
  const double* b = nullptr;  // nk weights (dt folded in), used when write_y1
  const double* e = nullptr;  // nk weights of the error estimate (dt folded in)
  int nk = 0;
  double rtol = 0, atol = 0;
  const int64_t* seg_end = nullptr;
  int nseg = 1;
  int64_t n = 0;
  DType dtype = DType::f32;
  double* stats = nullptr;  // 2 * nseg
  int threads = 1;
};

// Validate (std::invalid_argument on bad sizes or missing pointers) and run.
void rk_combine(const RkCombineArgs& args, Isa isa);
void rk_step_end(const RkStepEndArgs& args, Isa isa);

#define KK_RK_STEP_RUNS                                \
  void rk_combine_run(const RkCombineArgs& args);      \
  void rk_step_end_run(const RkStepEndArgs& args);
namespace portable { KK_RK_STEP_RUNS }
namespace avx2 { KK_RK_STEP_RUNS }
namespace avx512 { KK_RK_STEP_RUNS }
#undef KK_RK_STEP_RUNS

}  // namespace kernelkit
