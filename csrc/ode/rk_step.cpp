// Portable build of the Runge-Kutta stage kernels, and the entry points that validate and
// dispatch.
#define KK_ISA portable
#include "ode/rk_step_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {
namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

void check_common(const char* op, DType dtype, int64_t n, int count, int threads) {
  if (dtype != DType::f32 && dtype != DType::f64) fail(op, "dtype must be float32 or float64");
  if (n < 0) fail(op, "n must be >= 0");
  if (count < 1 || count > kRkMaxSources)
    fail(op, "the number of sources must be in [1, " + std::to_string(kRkMaxSources) +
                 "]; got " + std::to_string(count));
  if (threads < 1) fail(op, "threads must be >= 1");
}

void check_pointers(const char* op, const void* const* ptrs, int count) {
  if (!ptrs) fail(op, "null source list");
  for (int j = 0; j < count; ++j)
    if (!ptrs[j]) fail(op, "null source " + std::to_string(j));
}

}  // namespace

void rk_combine(const RkCombineArgs& a, Isa isa) {
  const char* op = "rk_combine";
  check_common(op, a.dtype, a.n, a.nsrc, a.threads);
  if (a.n == 0) return;
  check_pointers(op, a.srcs, a.nsrc);
  if (!a.out || !a.w) fail(op, "null output or weights");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::rk_combine_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::rk_combine_run(a);
#endif
  portable::rk_combine_run(a);
}

void rk_step_end(const RkStepEndArgs& a, Isa isa) {
  const char* op = "rk_step_end";
  check_common(op, a.dtype, a.n, a.nk, a.threads);
  if (a.nseg < 1 || a.nseg > kRkMaxSegments)
    fail(op, "the number of segments must be in [1, " + std::to_string(kRkMaxSegments) + "]");
  if (!a.seg_end || !a.stats) fail(op, "null segment ends or stats");
  int64_t prev = 0;
  for (int s = 0; s < a.nseg; ++s) {
    if (a.seg_end[s] < prev) fail(op, "segment ends must be non-decreasing");
    prev = a.seg_end[s];
  }
  if (prev != a.n) fail(op, "the last segment must end at n");
  if (a.n == 0) {
    for (int s = 0; s < 2 * a.nseg; ++s) a.stats[s] = 0;
    return;
  }
  check_pointers(op, a.ks, a.nk);
  if (!a.y0 || !a.y1 || !a.e || (a.write_y1 && !a.b)) fail(op, "null state or weights");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::rk_step_end_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::rk_step_end_run(a);
#endif
  portable::rk_step_end_run(a);
}

}  // namespace kernelkit
