// C = A @ B (+ bias) for float16 / bfloat16 (or float32) operands with float32 accumulation:
// batched, any strides (transposed views need no copy), output in float16, bfloat16 or float32.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// A matrix operand: element (i, j) of batch b sits at p + b * bs + i * rs + j * cs (elements).
struct MatrixView {
  const void* p = nullptr;
  int64_t bs = 0, rs = 0, cs = 0;
};

struct HalfGemmArgs {
  int64_t batch = 1, M = 0, N = 0, K = 0;
  MatrixView a;                 // (M, K) in in_dtype
  MatrixView b;                 // (K, N) in in_dtype
  void* c = nullptr;            // (M, N) in out_dtype; must not overlap a or b
  int64_t c_bs = 0, c_rs = 0, c_cs = 0;
  DType in_dtype = DType::f16;  // f16, bf16 or f32
  DType out_dtype = DType::f16; // f16, bf16 or f32
  const float* bias = nullptr;  // optional: (N,) added to every row, or (M,) to every column
  bool bias_per_row = false;
  int threads = 1;
};

// Validates (throws std::invalid_argument before touching memory) and runs.
void half_gemm(const HalfGemmArgs& args, Isa isa);

// The measured rate of the GEMM micro-kernel's inner operation on `threads` threads for
// operands of `dtype` (float FMAs of the ISA's vectors, or vdpbf16ps where the bfloat16 pair
// tile runs), register-resident, in flops per second: the compute floor of half_gemm.
double half_gemm_peak(int threads, Isa isa, DType dtype);

namespace portable {
void half_gemm_run(const HalfGemmArgs& args);
double half_gemm_peak_run(int threads, DType dtype);
}  // namespace portable
namespace avx2 {
void half_gemm_run(const HalfGemmArgs& args);
double half_gemm_peak_run(int threads, DType dtype);
}  // namespace avx2
namespace avx512 {
void half_gemm_run(const HalfGemmArgs& args);
double half_gemm_peak_run(int threads, DType dtype);
}  // namespace avx512

}  // namespace kernelkit
