// Portable build of the Philox normal generator, and its validating, dispatching entry point.
#define KK_ISA portable
#include "schedulers/randn_philox_impl.h"

#include <stdexcept>

namespace kernelkit {

void randn_philox(const RandnPhiloxArgs& a, Isa isa) {
  if (a.n < 0) throw std::invalid_argument("randn_philox: n must be >= 0");
  if (a.threads < 1) throw std::invalid_argument("randn_philox: threads must be >= 1");
  if (a.n == 0) return;
  if (a.out == nullptr) throw std::invalid_argument("randn_philox: null output pointer");
  // 16 counters per 64 values: the counter j = e / 4 must fit its 64 bits.
  if (a.n > (int64_t(1) << 62)) throw std::invalid_argument("randn_philox: n too large");
  if (isa >= Isa::avx512) {
#if defined(KERNELKIT_HAVE_AVX512)
    return avx512::randn_philox_run(a);
#endif
  }
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::randn_philox_run(a);
#endif
  }
  portable::randn_philox_run(a);
}

}  // namespace kernelkit
