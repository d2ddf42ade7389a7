// Portable build of binary_conv2d, and the one entry point that validates and dispatches.
#define KK_ISA portable
#include "binary/binary_conv2d_impl.h"

#include <limits>
#include <stdexcept>
#include <string>

#include "binary/binary_isa.h"

namespace kernelkit {

static void check_binary_conv2d_args(const BinaryConv2dArgs& g) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("binary_conv2d: " + what);
  };
  if (g.N < 0 || g.C < 0 || g.H < 1 || g.W < 1 || g.O < 1 || g.KH < 1 || g.KW < 1)
    fail("sizes must be N, C >= 0 and H, W, O, KH, KW >= 1");
  if (g.groups < 1 || g.C % g.groups || g.O % g.groups)
    fail("groups must divide both C and O");
  if (g.stride_h < 1 || g.stride_w < 1 || g.dil_h < 1 || g.dil_w < 1 || g.pad_h < 0 ||
      g.pad_w < 0)
    fail("stride and dilation must be >= 1, padding >= 0");
  const int64_t oh = (g.H + 2 * g.pad_h - g.dil_h * (g.KH - 1) - 1) / g.stride_h + 1;
  const int64_t ow = (g.W + 2 * g.pad_w - g.dil_w * (g.KW - 1) - 1) / g.stride_w + 1;
  if (g.H + 2 * g.pad_h < g.dil_h * (g.KH - 1) + 1 || g.W + 2 * g.pad_w < g.dil_w * (g.KW - 1) + 1 ||
      oh != g.OH || ow != g.OW)
    fail("output size does not match the input, kernel, stride, padding and dilation");
  if (g.KH * g.KW * (g.C / g.groups) > std::numeric_limits<int32_t>::max() / 2)
    fail("KH * KW * C / groups must be < 2**30");
  if (g.threads < 1) fail("threads must be >= 1");
  if (g.N == 0) return;
  if (g.x == nullptr || g.weight == nullptr || g.out == nullptr) fail("null pointer");
}

void binary_conv2d(const BinaryConv2dArgs& args, Isa isa) {
  check_binary_conv2d_args(args);
  if (args.N == 0) return;
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::binary_conv2d_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::binary_conv2d_run(args);
#endif
  portable::binary_conv2d_run(args);
}

}  // namespace kernelkit
