// 2-D linear recurrence over a (time x variate) grid, batched:
//   h[t, v] = a_t[t, v] * h[t-1, v] + a_v[t, v] * h[t, v-1] + x[t, v],
// h[-1, v] = h0_t[v] and h[t, -1] = h0_v[t] (boundary terms absent when h0 is null), and its
// adjoint (the backward). float32/float64/float16/bfloat16 storage; halves compute in float32.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// A (batch, rows, V) operand with unit stride along V; strides in elements, >= 0 (0 broadcasts).
struct Scan2dPlane {
  const void* data = nullptr;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
};

// A (batch, rows, V) result; its elements may not overlap.
struct Scan2dOut {
  void* data = nullptr;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
};

// A (batch, n) boundary vector: element (b, i) at b * batch_stride + i * stride.
struct Scan2dEdge {
  const void* data = nullptr;  // null: no boundary term
  int64_t batch_stride = 0;
  int64_t stride = 1;
};

struct LinearScan2dArgs {
  int64_t batch = 0;
  int64_t T = 0;
  int64_t V = 0;
  DType dtype = DType::f32;
  Scan2dPlane a_t, a_v;
  Scan2dEdge h0_t;      // (batch, V)
  Scan2dEdge h0_v;      // (batch, T)
  int threads = 1;
};

// Forward: h = scan(a_t, a_v, x; h0_t, h0_v).
struct LinearScan2dForward {
  LinearScan2dArgs s;
  Scan2dPlane x;
  Scan2dOut h;
};

// Backward from grad (dL/dh): g[t, v] = grad[t, v] + a_t[t+1, v] g[t+1, v] + a_v[t, v+1] g[t, v+1]
// written to dx; da_t[t, v] = g[t, v] h[t-1, v], da_v[t, v] = g[t, v] h[t, v-1] (h the forward
// output, boundaries from h0_t / h0_v, zero where those are null). da_t / da_v may be null
// (not computed); h is needed only when one of them is not.
struct LinearScan2dBackward {
  LinearScan2dArgs s;
  Scan2dPlane grad;
  Scan2dPlane h;
  Scan2dOut dx, da_t, da_v;
};

// Validate (throw std::invalid_argument, touching no memory on bad arguments) and run.
void linear_scan_2d_forward(const LinearScan2dForward& args, Isa isa);
void linear_scan_2d_backward(const LinearScan2dBackward& args, Isa isa);

namespace portable {
void linear_scan_2d_forward_run(const LinearScan2dForward& args);
void linear_scan_2d_backward_run(const LinearScan2dBackward& args);
}  // namespace portable
namespace avx2 {
void linear_scan_2d_forward_run(const LinearScan2dForward& args);
void linear_scan_2d_backward_run(const LinearScan2dBackward& args);
}  // namespace avx2
namespace avx512 {
void linear_scan_2d_forward_run(const LinearScan2dForward& args);
void linear_scan_2d_backward_run(const LinearScan2dBackward& args);
}  // namespace avx512

}  // namespace kernelkit
