// 2-D convolution (cross-correlation, zero padding, groups) of float16/bfloat16 images as
// implicit GEMMs with float32 accumulation: forward out[n, g] = W[g] @ im2col(x[n, g]), and the
// weight gradient dW[g] = sum_n grad[n, g] @ im2col(x[n, g])^T.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct HalfConv2dArgs {
  const void* x = nullptr;       // (batch, channels, height, width), any strides (elements)
  int64_t x_strides[4] = {0, 0, 0, 0};
  const void* weight = nullptr;  // (out_channels, channels / groups, kh, kw), contiguous
  const float* bias = nullptr;   // (out_channels,) or null
  void* out = nullptr;           // (batch, out_channels, out_h, out_w), contiguous
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t out_channels = 0, kh = 1, kw = 1, groups = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;  // must match the geometry above
  DType dtype = DType::f16;      // of x, weight and out: f16 or bf16
  int threads = 1;
};

// The weight gradient of that convolution: the output gradient (batch, out_channels, out_h,
// out_w), contiguous in args.dtype, against x; written as float32 (out_channels,
// channels / groups, kh, kw), contiguous. args.out and args.bias are not used.
struct HalfConv2dWeightGradArgs {
  HalfConv2dArgs conv;
  const void* grad = nullptr;
  float* grad_weight = nullptr;
};

// Both validate (throw std::invalid_argument before touching memory) and run.
void half_conv2d_forward(const HalfConv2dArgs& args, Isa isa);
void half_conv2d_weight_grad(const HalfConv2dWeightGradArgs& args, Isa isa);

namespace portable {
void half_conv2d_forward_run(const HalfConv2dArgs& args);
void half_conv2d_weight_grad_run(const HalfConv2dWeightGradArgs& args);
}  // namespace portable
namespace avx2 {
void half_conv2d_forward_run(const HalfConv2dArgs& args);
void half_conv2d_weight_grad_run(const HalfConv2dWeightGradArgs& args);
}  // namespace avx2
namespace avx512 {
void half_conv2d_forward_run(const HalfConv2dArgs& args);
void half_conv2d_weight_grad_run(const HalfConv2dWeightGradArgs& args);
}  // namespace avx512

}  // namespace kernelkit
