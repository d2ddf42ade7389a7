// First-order linear recurrence h_t = a_t * h_{t-1} + x_t (h_{-1} = h0, zeros when absent) along
// the middle axis of (n0, len, n1) strided arrays; reverse runs it from the end. Real
// (float32/float64/float16/bfloat16) or complex (pairs of float32/float64) elements.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// Element strides of one operand over (n0, len, n1); complex operands count complex elements.
struct ScanStrides {
  int64_t s0 = 0, st = 0, s1 = 0;
};

struct LinearScanArgs {
  const void* a = nullptr;  // may be broadcast (zero strides)
  const void* x = nullptr;
  void* out = nullptr;      // must not overlap itself (no zero stride on a dim of size > 1)
  const void* h0 = nullptr; // (n0, n1) with strides h0_s0, h0_s1; null means zeros
  ScanStrides a_strides, x_strides, out_strides;
  int64_t h0_s0 = 0, h0_s1 = 0;
  int64_t n0 = 0, len = 0, n1 = 0;
  DType dtype = DType::f32;  // of every operand; with is_complex, the type of both halves
  bool is_complex = false;
  bool reverse = false;
  bool conj_a = false;       // use conj(a_t) (complex only; the backward's transition)
  int threads = 1;
};

// The backward, in the opposite order of the forward (whose direction `reverse` names):
// g_t = grad_t + conj(a_{t+1}) g_{t+1}, dx_t = g_t, da_t = g_t conj(h_{t-1}) with h_{-1} = h0
// (or 0), dh0 = conj(a_0) g_0, "t + 1" being the step after t in the forward's order. da has
// x's shape (the caller sums it over a's broadcast dims).
struct LinearScanBackwardArgs {
  const void* a = nullptr;  // may be broadcast (zero strides)
  const void* grad = nullptr;
  const void* h = nullptr;  // the forward's output
  void* dx = nullptr;
  void* da = nullptr;
  ScanStrides a_strides, grad_strides, h_strides, dx_strides, da_strides;
  const void* h0 = nullptr;  // (n0, n1), null means zeros
  int64_t h0_s0 = 0, h0_s1 = 0;
  void* dh0 = nullptr;       // (n0, n1), always written
  int64_t dh0_s0 = 0, dh0_s1 = 0;
  int64_t n0 = 0, len = 0, n1 = 0;
  DType dtype = DType::f32;
  bool is_complex = false;
  bool reverse = false;
  int threads = 1;
};

// Validate (throw std::invalid_argument, never touching memory on bad arguments) and run.
void linear_scan(const LinearScanArgs& args, Isa isa);
void linear_scan_backward(const LinearScanBackwardArgs& args, Isa isa);

namespace portable {
void linear_scan_run(const LinearScanArgs& args);
void linear_scan_backward_run(const LinearScanBackwardArgs& args);
}  // namespace portable
namespace avx2 {
void linear_scan_run(const LinearScanArgs& args);
void linear_scan_backward_run(const LinearScanBackwardArgs& args);
}  // namespace avx2

namespace avx512 {
void linear_scan_run(const LinearScanArgs& args);
void linear_scan_backward_run(const LinearScanBackwardArgs& args);
}  // namespace avx512

}  // namespace kernelkit
