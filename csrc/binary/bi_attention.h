// BiBERT's binarized attention forward, fused: per batch entry the sign bits of q, k and v,
// then per query row S = (d - 2 popcount(q ^ k)) / sqrt(d) + mask thresholded straight into
// the bits of A = 1[S > 0], and out = popcount(A) - 2 popcount(A & neg(v)) per column.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

enum class BiAttentionMask : int { none = 0, keep = 1, add = 2 };

struct BiAttentionArgs {
  int64_t batch = 0, Lq = 0, Lk = 0, d = 0, dv = 0;
  DType dtype = DType::f32;  // of q, k, v and out
  // Batch entry e of q starts at q + offsets[e] (elements), of k at k + offsets[batch + e], of
  // v at v + offsets[2 batch + e], of the mask at mask + offsets[3 batch + e]: any broadcast.
  const int64_t* offsets = nullptr;
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t q_rs = 0, q_cs = 0, k_rs = 0, k_cs = 0, v_rs = 0, v_cs = 0;
  // keep: uint8, nonzero where a query may attend; add: added to the scores, in the compute
  // type (double for float64 q, float otherwise).
  BiAttentionMask mask_kind = BiAttentionMask::none;
  const void* mask = nullptr;
  int64_t mask_rs = 0, mask_cs = 0;
  void* out = nullptr;  // (batch, Lq, dv) contiguous, q's dtype; must not overlap the inputs
  double sqrt_d = 1.0;  // the scores' divisor, rounded to the compute type
  int threads = 1;
};

// Validates (std::invalid_argument before touching memory) and runs. NaN in q, k, v or in the
// scores (from the mask) raises std::invalid_argument naming it; out is then unspecified.
void bi_attention_forward(const BiAttentionArgs& args, Isa isa);

namespace portable {
void bi_attention_forward_run(const BiAttentionArgs& args);
}  // namespace portable
namespace avx2 {
void bi_attention_forward_run(const BiAttentionArgs& args);
}  // namespace avx2
namespace avx512 {
void bi_attention_forward_run(const BiAttentionArgs& args);
}  // namespace avx512

}  // namespace kernelkit
