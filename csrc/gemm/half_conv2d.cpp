// Portable build of the implicit-GEMM convolution, and the entry point that validates and
// dispatches.
#define KK_ISA portable
#include "gemm/half_conv2d_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_half_conv2d_args(const HalfConv2dArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("half_conv2d: " + what);
  };
  if (a.dtype != DType::f16 && a.dtype != DType::bf16) fail("dtype must be float16 or bfloat16");
  if (a.batch < 0 || a.channels < 1 || a.height < 0 || a.width < 0 || a.out_channels < 1)
    fail("sizes must be positive (batch and image sizes may be 0)");
  if (a.groups < 1 || a.channels % a.groups != 0 || a.out_channels % a.groups != 0)
    fail("groups must divide channels and out_channels");
  if (a.kh < 1 || a.kw < 1 || a.stride_h < 1 || a.stride_w < 1 || a.dilation_h < 1 ||
      a.dilation_w < 1 || a.pad_h < 0 || a.pad_w < 0)
    fail("kernel, stride and dilation must be >= 1, padding >= 0");
  const int64_t oh = (a.height + 2 * a.pad_h - a.dilation_h * (a.kh - 1) - 1) / a.stride_h + 1;
  const int64_t ow = (a.width + 2 * a.pad_w - a.dilation_w * (a.kw - 1) - 1) / a.stride_w + 1;
  if (oh < 1 || ow < 1 || oh != a.out_h || ow != a.out_w)
    fail("out_h / out_w do not match the geometry");
  if (a.threads < 1) fail("threads must be >= 1");
}

void half_conv2d_forward(const HalfConv2dArgs& args, Isa isa) {
  check_half_conv2d_args(args);
  if (args.batch > 0 && (args.x == nullptr || args.weight == nullptr || args.out == nullptr))
    throw std::invalid_argument("half_conv2d: null data pointer");
  if (args.batch == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::half_conv2d_forward_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::half_conv2d_forward_run(args);
#endif
  portable::half_conv2d_forward_run(args);
}

void half_conv2d_weight_grad(const HalfConv2dWeightGradArgs& args, Isa isa) {
  check_half_conv2d_args(args.conv);
  if (args.grad_weight == nullptr)
    throw std::invalid_argument("half_conv2d: null grad_weight pointer");
  if (args.conv.batch > 0 && (args.conv.x == nullptr || args.grad == nullptr))
    throw std::invalid_argument("half_conv2d: null data pointer");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::half_conv2d_weight_grad_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::half_conv2d_weight_grad_run(args);
#endif
  portable::half_conv2d_weight_grad_run(args);
}

}  // namespace kernelkit
