// Portable build of the delta-rule kernels, and the entry points that validate and dispatch.
#define KK_ISA portable
#include "scan/delta_rule_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("delta_rule: " + what);
}

// Heads of up to 4096 x 4096 keep the per-thread workspace bounded (64 MiB in float32).
constexpr int64_t kMaxHeadDim = 4096;

void check_sizes(const DeltaRuleSizes& n, int threads) {
  if (n.batch < 0 || n.steps < 0 || n.heads < 0) fail("batch, steps and heads must be >= 0");
  if (n.dk < 1 || n.dv < 1 || n.dk > kMaxHeadDim || n.dv > kMaxHeadDim)
    fail("d_k and d_v must be in [1, 4096]; got " + std::to_string(n.dk) + " and " +
         std::to_string(n.dv));
  if (threads < 1) fail("threads must be >= 1");
}

template <class View> void check_seq(const View& x, const char* name, bool needed) {
  if (!needed) return;
  if (x.data == nullptr) fail(std::string("null pointer for ") + name);
  if (x.sb < 0 || x.st < 0 || x.sh < 0) fail(std::string("negative stride for ") + name);
}

template <class View> void check_optional_seq(const View& x, const char* name, bool steps) {
  check_seq(x, name, steps && x.data != nullptr);
}

// The views both directions read: q, k, v and beta. Returns whether there are steps (views
// of zero steps may be null).
template <class Args> bool check_inputs(const Args& a) {
  const bool steps = a.n.steps > 0;
  check_seq(a.q, "q", steps);
  check_seq(a.k, "k", steps);
  check_seq(a.v, "v", steps);
  check_seq(a.beta, "beta", steps);
  return steps;
}

}  // namespace

void delta_rule_forward(const DeltaRuleForwardArgs& a, Isa isa) {
  check_sizes(a.n, a.threads);
  if (a.n.batch == 0 || a.n.heads == 0) return;
  const bool steps = check_inputs(a);
  check_seq(a.o, "o", steps);
  check_optional_seq(a.w, "w", steps);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::delta_rule_forward_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::delta_rule_forward_run(a);
#endif
  portable::delta_rule_forward_run(a);
}

void delta_rule_backward(const DeltaRuleBackwardArgs& a, Isa isa) {
  check_sizes(a.n, a.threads);
  if (a.n.batch == 0 || a.n.heads == 0) return;
  const bool steps = check_inputs(a);
  check_seq(a.d_o, "d_o", steps);
  check_optional_seq(a.w, "w", steps);
  check_seq(a.dq, "dq", steps);
  check_seq(a.dk, "dk", steps);
  check_seq(a.dv, "dv", steps);
  check_seq(a.dbeta, "dbeta", steps);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::delta_rule_backward_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::delta_rule_backward_run(a);
#endif
  portable::delta_rule_backward_run(a);
}

}  // namespace kernelkit
