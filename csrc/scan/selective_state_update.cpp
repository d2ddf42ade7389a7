// Portable build of the selective_state_update kernel, and the entry that validates and
// dispatches.
#define KK_ISA portable
#include "scan/selective_state_update_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_ssu_args(const SsuArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("selective_state_update: " + what);
  };
  if (a.batch < 0 || a.nheads < 0 || a.dim < 0 || a.dstate < 0)
    fail("sizes must be >= 0");
  if (a.ngroups < 1 || a.nheads % a.ngroups != 0)
    fail("ngroups must be >= 1 and divide nheads; got ngroups = " + std::to_string(a.ngroups) +
         ", nheads = " + std::to_string(a.nheads));
  if (a.threads < 1) fail("threads must be >= 1");
  if ((a.state_dtype == DType::f64) != (a.x_dtype == DType::f64))
    fail("x must be float64 exactly when the state is float64");
  if (a.A_stride_dstate != 0 && a.A_stride_dstate != 1)
    fail("A's dstate stride must be 0 or 1");
  if (a.state_stride_batch < 0 || a.state_stride_head < 0 || a.state_stride_dim < 0 ||
      a.A_stride_head < 0 || a.A_stride_dim < 0)
    fail("strides must be >= 0");
  if (a.batch * a.nheads * a.dim == 0) return;
  if (a.state_stride_dim < a.dstate) fail("state rows (dim stride) may not overlap");
  if (!a.x || !a.dt || !a.out || (a.dstate > 0 && (!a.state || !a.A || !a.B || !a.C)))
    fail("null data pointer");
}

void selective_state_update(const SsuArgs& args, Isa isa) {
  check_ssu_args(args);
  if (args.batch * args.nheads * args.dim == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::selective_state_update_run(args);
#endif
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::selective_state_update_run(args);
#endif
  }
  portable::selective_state_update_run(args);
}

}  // namespace kernelkit
