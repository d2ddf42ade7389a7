// Binary 2-D convolution: out = conv2d(sign(x), sign(w)) * scale + bias for NCHW x, sign(0) =
// +1, by XNOR-popcount on packed sign bits (pack_signs' layout along the channels). Padding
// with 0 (as F.conv2d on the signs) or with +1 (larq-compute-engine's fast mode).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct BinaryConv2dArgs {
  int64_t N = 0, C = 0, H = 0, W = 0;  // x (N, C, H, W)
  const void* x = nullptr;
  DType x_dtype = DType::f32;
  int64_t x_strides[4] = {0, 0, 0, 0};  // elements
  int64_t O = 0, groups = 1, KH = 0, KW = 0;
  // Float weight (O, C / groups, KH, KW) elements, or packed: int32 sign words (O,
  // ceil((C / groups) / 32), KH, KW) = pack_signs(weight, dim=1), bits along the channels.
  const void* weight = nullptr;
  bool weight_packed = false;
  DType weight_dtype = DType::f32;  // of a float weight
  int64_t w_strides[4] = {0, 0, 0, 0};
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  bool pad_plus1 = false;  // padded taps are +1 (else 0)
  // Out: contiguous (N, O, OH, OW) in out_dtype (a float dtype).
  void* out = nullptr;
  DType out_dtype = DType::f32;
  int64_t OH = 0, OW = 0;
  // out = dot * scale + bias, one fma in float32 (float64 for a float64 out); scale and bias
  // are (O,) arrays in that dtype or null (then scale_value, and no bias).
  const void* scale = nullptr;
  double scale_value = 1.0;
  const void* bias = nullptr;
  int threads = 1;
};

// Validates (std::invalid_argument before touching memory) and runs. NaN in x or a float
// weight raises std::invalid_argument naming it ("x" / "weight"); out is then unspecified.
void binary_conv2d(const BinaryConv2dArgs& args, Isa isa);

namespace portable {
void binary_conv2d_run(const BinaryConv2dArgs& args);
}
namespace avx2 {
void binary_conv2d_run(const BinaryConv2dArgs& args);
}
namespace avx512 {
void binary_conv2d_run(const BinaryConv2dArgs& args);
}

}  // namespace kernelkit
