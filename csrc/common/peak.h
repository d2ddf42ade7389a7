// The timing harness of the compute floors (binary_popcount_peak, half_gemm_peak): a
// register-resident loop of a kernel's inner operation, calibrated to about 20 ms on one
// thread, then run on every thread at once; the best of three runs is the peak.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common/parallel.h"

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including common/peak.h"
#endif

namespace kernelkit {
namespace KK_ISA {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// loop(steps, sink) runs `steps` steps, xors a value of its results into *sink (so nothing is
// folded away) and returns the operations it did. Returns operations per second.
template <class Loop> double measure_peak(int threads, const Loop& loop) {
  uint64_t sink = 0;
  int64_t steps = 1 << 14;
  for (;;) {
    const double t0 = now_seconds();
    loop(steps, &sink);
    const double dt = now_seconds() - t0;
    if (dt > 0.005 || steps > (int64_t(1) << 40)) {
      steps = int64_t(double(steps) * 0.02 / std::max(dt, 1e-9)) + 1;
      break;
    }
    steps *= 4;
  }
  // A peak, not an average over interruptions: the best of three runs on all threads.
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    double ops = 0;
    const double t0 = now_seconds();
    ParallelErrors errors;
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    {
      uint64_t local = 0;
      errors.run([&] { ops += loop(steps, &local); });
#pragma omp atomic
      sink ^= local;
    }
    errors.rethrow();
    best = std::max(best, ops / (now_seconds() - t0));
  }
  volatile uint64_t keep = sink;  // the results are used
  (void)keep;
  return best;
}

}  // namespace KK_ISA
}  // namespace kernelkit
