// Portable build of the selective scan kernels, and the entry points that validate and
// dispatch.
#define KK_ISA portable
#include "scan/selective_scan_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_args(const char* op, const SelectiveScanArgs& a) {
  auto fail = [op](const std::string& what) {
    throw std::invalid_argument(std::string(op) + ": " + what);
  };
  if (a.batch < 0 || a.dim < 0 || a.length < 0) fail("batch, dim and L must be >= 0");
  if (a.n_state < 1 || a.n_state > kSelectiveScanMaxN)
    fail("N must be in [1, " + std::to_string(kSelectiveScanMaxN) + "]; got " +
         std::to_string(a.n_state));
  for (int64_t g : {a.groups_b, a.groups_c})
    if (g < 0 || (g > 0 && a.dim % g != 0))
      fail("groups must be 0 (constant) or divide dim; got " + std::to_string(g));
  if (a.threads < 1) fail("threads must be >= 1");
  if (a.batch * a.dim == 0) return;
  if (!a.A) fail("A is required");
  // A variable B or C holds no values when L = 0.
  if ((!a.B && (a.groups_b == 0 || a.length > 0)) || (!a.C && (a.groups_c == 0 || a.length > 0)))
    fail("B and C are required");
  if (a.batch * a.dim * a.length > 0 && (!a.u || !a.delta)) fail("u and delta are required");
}

void selective_scan_fwd(const SelectiveScanArgs& args, const SelectiveScanOutputs& outs, Isa isa) {
  check_args("selective_scan_fwd", args);
  if (args.batch * args.dim == 0) return;
  if (args.length > 0 && !outs.out) throw std::invalid_argument("selective_scan_fwd: null out");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::selective_scan_fwd_run(args, outs);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::selective_scan_fwd_run(args, outs);
#endif
  portable::selective_scan_fwd_run(args, outs);
}

void selective_scan_bwd(const SelectiveScanArgs& args, const SelectiveScanGrads& grads, Isa isa) {
  check_args("selective_scan_bwd", args);
  if (args.batch * args.dim == 0) return;
  auto need = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("selective_scan_bwd: ") + what);
  };
  // Pointers to zero-element tensors may be null: du, ddelta, grad_out and variable dB / dC
  // when L = 0.
  const bool steps = args.length > 0;
  need(grads.dA && ((grads.du && grads.ddelta && grads.grad_out) || !steps), "null gradient");
  need((grads.dB || (args.groups_b > 0 && !steps)) && (grads.dC || (args.groups_c > 0 && !steps)),
       "null dB or dC");
  need(!args.z || grads.dz || !steps, "dz is required when z is given");
  need(!args.D || grads.dD, "dD is required when D is given");
  need(!args.delta_bias || grads.ddelta_bias, "ddelta_bias is required when delta_bias is given");
  need(!args.h0 || grads.dh0, "dh0 is required when h0 is given");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::selective_scan_bwd_run(args, grads);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::selective_scan_bwd_run(args, grads);
#endif
  portable::selective_scan_bwd_run(args, grads);
}

}  // namespace kernelkit
