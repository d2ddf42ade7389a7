// Portable build of the fused scheduler step, and its validating, dispatching entry point.
#define KK_ISA portable
#include "schedulers/scheduler_step_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_scheduler_step_args(const SchedulerStepArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("scheduler_step: " + what);
  };
  if (a.n < 0) fail("n must be >= 0");
  if (a.threads < 1) fail("threads must be >= 1");
  if (a.n_hist < 0 || a.n_hist > kSchedulerMaxHistory)
    fail("n_hist must be in [0, " + std::to_string(kSchedulerMaxHistory) + "]");
  if (a.n == 0) return;
  if (a.x == nullptr) fail("null sample pointer");
  if (a.m == nullptr && a.p_m != 0) fail("null model output pointer with p_m != 0");
  if (a.out == nullptr && a.store == nullptr) fail("neither out nor store given");
  for (int k = 0; k < a.n_hist; ++k)
    if (a.hist[k] == nullptr) fail("null history pointer " + std::to_string(k));
}

void scheduler_step(const SchedulerStepArgs& args, Isa isa) {
  check_scheduler_step_args(args);
  if (args.n == 0) return;
  SchedulerStepArgs a = args;
  if (a.m == nullptr) a.m = a.x;  // p_m == 0: read x again (its cache lines are already in)
  if (isa >= Isa::avx512) {
#if defined(KERNELKIT_HAVE_AVX512)
    return avx512::scheduler_step_run(a);
#endif
  }
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::scheduler_step_run(a);
#endif
  }
  portable::scheduler_step_run(a);
}

}  // namespace kernelkit
