// The delta rule (DeltaNet): per (batch, head) a (d_v x d_k) state S_t = S_{t-1} +
// beta_t (v_t - S_{t-1} k_t) k_t^T and outputs o_t = S_t (scale q_t); forward and backward.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// A (B, T, H, D) tensor with unit stride along D (D = 1 for beta): element strides of b, t, h.
struct SeqView {
  const void* data = nullptr;
  int64_t sb = 0, st = 0, sh = 0;
};

struct SeqOut {
  void* data = nullptr;
  int64_t sb = 0, st = 0, sh = 0;
};

struct DeltaRuleSizes {
  int64_t batch = 0, steps = 0, heads = 0, dk = 0, dv = 0;
};

// States (h0, last_state, their gradients) are contiguous (B, H, d_k, d_v) arrays of the compute
// type (double for float64 inputs, float otherwise), as flash-linear-attention stores them.
struct DeltaRuleForwardArgs {
  DeltaRuleSizes n;
  DType dtype = DType::f32;  // of q, k, v, beta and o
  SeqView q, k, v, beta;
  SeqOut o;
  const void* h0 = nullptr;  // optional
  void* last_state = nullptr;  // optional
  SeqOut w;  // optional, compute type (B, T, H, d_v): w_t = v_t - S_{t-1} k_t, for the backward
  double scale = 1.0;
  int threads = 1;
};

// Gradients come out in the compute type (the caller casts them to the input dtypes).
struct DeltaRuleBackwardArgs {
  DeltaRuleSizes n;
  DType dtype = DType::f32;  // of q, k, v, beta and d_o
  SeqView q, k, v, beta, d_o;
  const void* h0 = nullptr;  // optional
  const void* d_last = nullptr;  // optional: gradient of last_state
  SeqView w;  // optional: the forward's w (compute type); recomputed when absent
  SeqOut dq, dk, dv, dbeta;
  void* dh0 = nullptr;  // optional
  double scale = 1.0;
  int threads = 1;
};

// Validate (throw std::invalid_argument, touching no memory on bad arguments) and run.
void delta_rule_forward(const DeltaRuleForwardArgs& args, Isa isa);
void delta_rule_backward(const DeltaRuleBackwardArgs& args, Isa isa);

namespace portable {
void delta_rule_forward_run(const DeltaRuleForwardArgs& args);
void delta_rule_backward_run(const DeltaRuleBackwardArgs& args);
}  // namespace portable
namespace avx2 {
void delta_rule_forward_run(const DeltaRuleForwardArgs& args);
void delta_rule_backward_run(const DeltaRuleBackwardArgs& args);
}  // namespace avx2
namespace avx512 {
void delta_rule_forward_run(const DeltaRuleForwardArgs& args);
void delta_rule_backward_run(const DeltaRuleBackwardArgs& args);
}  // namespace avx512

}  // namespace kernelkit
