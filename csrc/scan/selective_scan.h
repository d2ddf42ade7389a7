// Selective scan (Mamba's S6 recurrence) over (batch, dim, L) sequences with N states per
// channel, forward and backward:
//   dt = softplus?(delta + delta_bias), dA = exp(dt A) (2 exp(dt A) - 1 with negative
//   eigenvalues), h_t = dA_t h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t,
//   out = (y + D u) * silu(z).
// All tensors are contiguous. u, delta, z, out and grad_out share `dtype`; everything else is
// in the compute type (float64 when dtype is f64, else float32), except B and C, which may be
// any of the four dtypes (converted once, in the transposing pre-pass).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// Most states per channel: the kernels keep a channel's state vectors in L1.
constexpr int64_t kSelectiveScanMaxN = 256;

struct SelectiveScanArgs {
  DType dtype = DType::f32;   // of u, delta, z, out, grad_out
  DType b_dtype = DType::f32;
  DType c_dtype = DType::f32;
  int64_t batch = 0, dim = 0, length = 0, n_state = 0;
  int64_t groups_b = 0;       // 0: B is (dim, N); else B is (batch, groups_b, N, L)
  int64_t groups_c = 0;       // same for C
  const void* u = nullptr;
  const void* delta = nullptr;
  const void* A = nullptr;           // (dim, N) compute type
  const void* B = nullptr;
  const void* C = nullptr;
  const void* D = nullptr;           // (dim,) compute type, optional
  const void* z = nullptr;           // like u, optional
  const void* delta_bias = nullptr;  // (dim,) compute type, optional
  const void* h0 = nullptr;          // (batch, dim, N) compute type, optional
  bool softplus = false;
  bool negative_eigenvalues = false;
  int threads = 1;
};

struct SelectiveScanOutputs {
  void* out = nullptr;         // (batch, dim, L) dtype
  void* last_state = nullptr;  // (batch, dim, N) compute type
};

// Backward inputs beyond the forward's, and the gradients, all in the compute type except
// grad_out (dtype). Gradients of absent optional inputs must be null; the others are required.
struct SelectiveScanGrads {
  const void* grad_out = nullptr;         // (batch, dim, L) dtype
  const void* grad_last_state = nullptr;  // (batch, dim, N), optional
  void* du = nullptr;
  void* ddelta = nullptr;
  void* dA = nullptr;
  void* dB = nullptr;           // B's shape
  void* dC = nullptr;           // C's shape
  void* dD = nullptr;
  void* dz = nullptr;
  void* ddelta_bias = nullptr;
  void* dh0 = nullptr;
};

// Validate (std::invalid_argument on bad sizes or missing pointers) and run.
void selective_scan_fwd(const SelectiveScanArgs& args, const SelectiveScanOutputs& outs, Isa isa);
void selective_scan_bwd(const SelectiveScanArgs& args, const SelectiveScanGrads& grads, Isa isa);

namespace portable {
void selective_scan_fwd_run(const SelectiveScanArgs& args, const SelectiveScanOutputs& outs);
void selective_scan_bwd_run(const SelectiveScanArgs& args, const SelectiveScanGrads& grads);
}  // namespace portable
namespace avx2 {
void selective_scan_fwd_run(const SelectiveScanArgs& args, const SelectiveScanOutputs& outs);
void selective_scan_bwd_run(const SelectiveScanArgs& args, const SelectiveScanGrads& grads);
}  // namespace avx2
namespace avx512 {
void selective_scan_fwd_run(const SelectiveScanArgs& args, const SelectiveScanOutputs& outs);
void selective_scan_bwd_run(const SelectiveScanArgs& args, const SelectiveScanGrads& grads);
}  // namespace avx512

}  // namespace kernelkit
