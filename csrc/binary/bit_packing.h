// Signs of float tensors packed into int32 words along one dim, and back (larq-compute-engine's
// layout): bit j of word w is element 32 w + j, 1 where the element is < 0 (so -0.0 and +0.0
// give 0, i.e. +1), the tail of the last word padded with 0 bits. A tensor is seen as
// (outer, n, inner), its words as (outer, ceil(n / 32), inner); strides in elements.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

// Strides of an (outer, n, inner) view: `along` is the stride of the middle dim (the packed
// one for elements, the word index for words). Non-negative.
struct Strides3 {
  int64_t outer = 0, along = 0, inner = 0;
};

struct PackSignsArgs {
  const void* x = nullptr;  // float32 / float64 / float16 / bfloat16 elements
  DType dtype = DType::f32;
  int64_t outer = 0, n = 0, inner = 0;
  Strides3 x_strides;
  int32_t* words = nullptr;  // (outer, ceil(n / 32), inner), must not overlap itself or x
  Strides3 word_strides;
  int threads = 1;
};

struct UnpackSignsArgs {
  const int32_t* words = nullptr;  // (outer, ceil(n / 32), inner); padding bits are ignored
  Strides3 word_strides;
  int64_t outer = 0, n = 0, inner = 0;
  void* out = nullptr;  // (outer, n, inner) of +-1 in dtype; must not overlap itself or words
  DType dtype = DType::f32;
  Strides3 out_strides;
  int threads = 1;
};

// Validate (std::invalid_argument before touching memory) and run. pack_signs returns whether
// x holds a NaN (it has no sign to pack; the words are then unspecified).
bool pack_signs(const PackSignsArgs& args, Isa isa);
void unpack_signs(const UnpackSignsArgs& args, Isa isa);

// The kernels of one ISA, for other ops' code built for the same ISA (binary_gemm,
// binary_conv2d): no validation. *_run use up to args.threads threads (OpenMP, from 256 KiB);
// the line and lane packers run on the calling thread and return whether an element was NaN.
// T is float, double, f16_bits or bf16_bits.
//   pack_sign_line:  n elements x[0], x[stride], .. into ceil(n / 32) words w[0],
//                    w[word_stride], ..
//   pack_sign_lanes: `lanes` lines side by side (element e of lane i at x[e * n_stride + i];
//                    e.g. the channels of an NCHW image, lanes = H * W) into words
//                    w[k * word_stride + i], k < ceil(n / 32).
#define KK_BIT_PACKING_KERNELS                                                               \
  bool pack_signs_run(const PackSignsArgs& args);                                            \
  void unpack_signs_run(const UnpackSignsArgs& args);                                        \
  template <class T>                                                                         \
  bool pack_sign_line(const T* x, int64_t n, int64_t stride, int32_t* words,                 \
                      int64_t word_stride);                                                  \
  template <class T>                                                                         \
  bool pack_sign_lanes(const T* x, int64_t n, int64_t n_stride, int64_t lanes, int32_t* words, \
                       int64_t word_stride);
namespace portable { KK_BIT_PACKING_KERNELS }
namespace avx2 { KK_BIT_PACKING_KERNELS }
namespace avx512 { KK_BIT_PACKING_KERNELS }
#undef KK_BIT_PACKING_KERNELS

}  // namespace kernelkit
