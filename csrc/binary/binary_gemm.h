// C = sign(A) @ sign(B) by XNOR-popcount: A (M, K) and B (K, N) are float tensors (binarized,
// sign(0) = +1) or sign bits packed in int32 words (pack_signs' layout: bit j of word w is
// element 32 w + j, 1 where the element is < 0, the last word padded with 0 bits); batched,
// any strides; C in int32 (exact) or a float dtype, optionally C * scale + bias per column.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// One operand. Float: element (i, k) of A, or (k, j) of B, of batch entry t at
// p + t * bs + i * rs + k * cs (elements). Packed: the same with k replaced by the int32 word
// index w < words = ceil(K / 32), the bits running along K.
struct BinaryOperand {
  const void* p = nullptr;
  int64_t bs = 0, rs = 0, cs = 0;
  bool packed = false;
  DType dtype = DType::f32;  // of a float operand
  int64_t k_extent = 0;      // the operand's size along K: K, or ceil(K / 32) words if packed
};

struct BinaryGemmArgs {
  int64_t batch = 1, M = 0, N = 0, K = 0;  // K in bits (elements)
  BinaryOperand a, b;
  void* c = nullptr;  // (M, N) per batch entry; must not overlap a or b
  int64_t c_bs = 0, c_rs = 0, c_cs = 0;
  bool out_int32 = true;        // int32 C (exact); otherwise out_dtype
  DType out_dtype = DType::f32;
  // Float C only: C = dot * scale + bias, one fma in the compute type (float64 for a float64
  // C, float32 otherwise); scale and bias are (N,) arrays in the compute type or null (then
  // scale_value, and no bias).
  const void* scale = nullptr;
  double scale_value = 1.0;
  const void* bias = nullptr;
  int threads = 1;
};

// Validates (throws std::invalid_argument before touching memory) and runs. Float operands
// containing NaN are refused (std::invalid_argument, C left unspecified): sign(NaN) has no
// value, as in pack_signs.
void binary_gemm(const BinaryGemmArgs& args, Isa isa);

// The measured rate of the micro-kernel's inner operation on `threads` threads (xor +
// popcount + add of register-resident bit vectors, no memory traffic), in bit-pair
// multiply-accumulates per second: the compute floor of binary_gemm.
double binary_popcount_peak(int threads, Isa isa);

namespace portable {
void binary_gemm_run(const BinaryGemmArgs& args);
double binary_popcount_peak_run(int threads);
}  // namespace portable
namespace avx2 {
void binary_gemm_run(const BinaryGemmArgs& args);
double binary_popcount_peak_run(int threads);
}  // namespace avx2
namespace avx512 {
void binary_gemm_run(const BinaryGemmArgs& args);
double binary_popcount_peak_run(int threads);
}  // namespace avx512

}  // namespace kernelkit
