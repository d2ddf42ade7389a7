// larq's quantizers (and BiPer's periodic sign) as elementwise kernels over contiguous
// tensors: a forward that writes the quantized values and, for the clipped straight-through
// kinds, one mask bit per element (int32 words, bit j of word w = element 32 w + j, LSB first,
// tail bits 0); a backward from those bits (clipped STEs) or from the input (smooth surrogates).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

enum class QuantKind : int {
  ste_sign = 0,       // x >= 0 ? 1 : -1; bit = |x| <= clip
  approx_sign = 1,    // forward as ste_sign; grad (2 - 2|x|) on |x| <= 1
  swish_sign = 2,     // forward as ste_sign; grad b (2 - b x tanh(b x / 2)) / (1 + cosh(b x))
  ste_heaviside = 3,  // x > 0 ? 1 : 0; bit = |x| <= clip
  ste_tern = 4,       // sign0(sign0(x + t) + sign0(x - t)), sign0(0) = 0; bit = |x| <= clip
  dorefa = 5,         // round_half_even(clamp(x, 0, 1) * levels) / levels; bit = 0 <= x <= 1
  periodic_sign = 6,  // sin(f x) >= 0 ? 1 : -1; grad f cos(f x)
};

// Every kind maps NaN to NaN in the forward; its bit is 0 unless clipped is false.
struct QuantizeArgs {
  const void* x = nullptr;  // n elements, float32 / float64 / float16 / bfloat16
  void* out = nullptr;      // n elements of the same dtype; must not overlap x
  DType dtype = DType::f32;
  int64_t n = 0;
  QuantKind kind = QuantKind::ste_sign;
  double param = 0;   // threshold (ste_tern), levels 2^k - 1 (dorefa), freq (periodic_sign)
  double clip = 1;    // clip value of the bit (ste_sign, ste_heaviside, ste_tern)
  bool clipped = true;  // false: every bit is 1 (clip_value=None: identity gradient)
  int32_t* mask = nullptr;  // ceil(n / 32) words, or null: no bits written
  // Optional per-channel factor (magnitude_aware_sign): out[i] *= scale[i % channels], in the
  // compute type (float for float32 and the 16-bit formats, double for float64).
  const void* scale = nullptr;
  int64_t channels = 1;
  int threads = 1;
};

struct QuantizeBackwardArgs {
  const void* grad = nullptr;  // n elements of dtype
  const void* x = nullptr;     // approx_sign, swish_sign, periodic_sign: the forward's input
  const int32_t* mask = nullptr;  // the clipped kinds: the forward's bits
  const void* scale = nullptr;    // optional, as in QuantizeArgs
  int64_t channels = 1;
  void* out = nullptr;  // n elements of dtype; must not overlap the inputs
  DType dtype = DType::f32;
  int64_t n = 0;
  QuantKind kind = QuantKind::ste_sign;
  double param = 0;  // beta (swish_sign), freq (periodic_sign)
  int threads = 1;
};

// Validate (std::invalid_argument before touching memory) and run.
void quantize(const QuantizeArgs& args, Isa isa);
void quantize_backward(const QuantizeBackwardArgs& args, Isa isa);

#define KK_QUANTIZER_KERNELS                                 \
  void quantize_run(const QuantizeArgs& args);               \
  void quantize_backward_run(const QuantizeBackwardArgs& args);
namespace portable { KK_QUANTIZER_KERNELS }
namespace avx2 { KK_QUANTIZER_KERNELS }
namespace avx512 { KK_QUANTIZER_KERNELS }
#undef KK_QUANTIZER_KERNELS

}  // namespace kernelkit
