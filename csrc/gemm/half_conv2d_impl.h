// Implicit-GEMM convolution, written once and compiled once per ISA (half_conv2d.cpp, _avx2.cpp,
// _avx512.cpp: the core's float tile, 6 x 16 or 6 x 64). Per image: one float32 copy of the zero-padded image
// (converted once, read sequentially), from which the GEMM core's packers read the im2col
// matrix directly (a table gives each im2col row's offset in the copy). Forward: the im2col
// matrix is B (per kernel tap, 8 output positions are one contiguous run, or a gather where an
// output row ends inside them and at strides > 1); the weight of each group is A. Weight
// gradient: the transposed im2col matrix is A, 8 columns of a sliver's MR rows at a time
// through a register transpose; the output gradient is B. No im2col matrix is ever stored:
// the image is read once and its padded copy stays in L2/L3 while the GEMMs pack from it
// (packing straight from x instead left the weight gradient's packing waiting on cache misses).
// Threads take whole images when the batch allows (forward: one at a time; weight gradient:
// fixed runs, each summed into its own float32 dW, added in order), else split each GEMM.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/parallel.h"
#include "gemm/depthwise_conv2d_impl.h"
#include "gemm/gemm_core_impl.h"
#include "gemm/half_conv2d.h"

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

constexpr int kSlotImage = 14, kSlotTapOffsets = 17;

// The im2col matrix of one padded image, M[k][j] = image[tap_offset[k] + position(j)], with
// k = (channel, tap row, tap column) and j = (output row, output column). The per-k offsets
// are a table computed once per image (no division per packed row).
struct PaddedIm2col {
  const float* image;         // (channels, hp, wp), zero-padded, float32
  const int64_t* tap_offset;  // per k of the group: (c * hp + r * dilation_h) * wp + s * dilation_w
  int64_t wp, out_w, stride_h, stride_w;

  int64_t position(int64_t j) const { return j / out_w * stride_h * wp + j % out_w * stride_w; }
};

// The forward's B operand: the im2col matrix itself.
struct Im2colB : PaddedIm2col {
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* out) const {
    // Each eighth-column run of the sliver is one vector load when its columns are
    // consecutive in the image (unit stride, no output row end inside); otherwise a
    // per-column gather.
    constexpr int kRuns = NR / 8;
    int64_t offset[NR];
    bool run[kRuns];
    for (int h = 0; h < kRuns; ++h) {
      run[h] = stride_w == 1 && h * 8 + 8 <= cols;
      for (int64_t jj = h * 8; jj < h * 8 + 8; ++jj) {
        offset[jj] = position(j0 + std::min(jj, cols - 1));
        run[h] = run[h] && offset[jj] == offset[h * 8] + (jj - h * 8);
      }
    }
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = image + tap_offset[k0 + k];
      float* o = out + k * NR;
      for (int h = 0; h < kRuns; ++h) {
        if (run[h]) {
          store_vec(o + h * 8, load_as<float>(src + offset[h * 8]));
          continue;
        }
        for (int64_t jj = h * 8; jj < h * 8 + 8; ++jj) o[jj] = jj < cols ? src[offset[jj]] : 0.0f;
      }
    }
  }
};

// The weight gradient's A operand: the transposed im2col matrix, A[k][l] = M[k][l]. A sliver's
// MR rows are packed together, 8 columns of an output row at a time: a vector per row (one
// load at unit stride, else gathered), transposed into 8 k-steps.
struct Im2colA : PaddedIm2col {
  // A[i0:i0+rows, k0:k0+kc] into out[l * MR + i]; out needs 2 floats of slack at its end
  // (store_a_steps).
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* out) const {
    const float* tap[MR];  // null for the zero rows that pad a sliver to MR
    for (int64_t i = 0; i < MR; ++i) tap[i] = i < rows ? image + tap_offset[i0 + i] : nullptr;
    for (int64_t l = k0; l < k0 + kc;) {
      const int64_t run = std::min(k0 + kc - l, out_w - l % out_w);
      pack_run(tap, position(l), run, out + (l - k0) * MR);
      l += run;
    }
  }

  // run output columns of one output row (image offset `position` for the first) into
  // o[t * MR + i], in increasing t (as store_a_steps needs).
  void pack_run(const float* const* tap, int64_t position, int64_t run, float* o) const {
    for (int64_t t = 0; t < run; t += 8) {
      const int64_t n = std::min<int64_t>(8, run - t);
      vf8 v[8];
      for (int i = 0; i < MR; ++i) {
        v[i] = Vec<float>::broadcast(0.0f);
        if (tap[i] == nullptr) continue;
        const float* src = tap[i] + position + t * stride_w;
        if (stride_w == 1 && n == 8) {
          v[i] = load_as<float>(src);
          continue;
        }
        // A short tail (a full load could pass the image's end) or a stride: gathered.
        for (int64_t e = 0; e < n; ++e) v[i][e] = src[e * stride_w];
      }
      store_a_steps(v, n, o + t * MR);
    }
  }
};

// The calling thread's padded float32 copy of one image at a time, and the im2col offsets
// into it.
struct PaddedImage {
  const HalfConv2dArgs& a;
  int64_t hp, wp;
  Scratch<float, kSlotImage> scratch;
  float* image;
  int64_t* tap_offset;

  explicit PaddedImage(const HalfConv2dArgs& args)
      : a(args), hp(a.height + 2 * a.pad_h), wp(a.width + 2 * a.pad_w),
        image(scratch.get(a.channels * hp * wp)),
        tap_offset(thread_buffer<int64_t, kSlotTapOffsets>(a.channels / a.groups * a.kh * a.kw)) {
    int64_t* o = tap_offset;
    for (int64_t c = 0; c < a.channels / a.groups; ++c)
      for (int64_t r = 0; r < a.kh; ++r)
        for (int64_t s = 0; s < a.kw; ++s)
          *o++ = (c * hp + r * a.dilation_h) * wp + s * a.dilation_w;
  }

  // Every channel of image x (strides a.x_strides), padded, on `threads` threads.
  template <class T> void load(const T* x, int threads) {
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < a.channels; ++c) errors.run([&] {
      pad_plane(x + c * a.x_strides[1], a.x_strides, a, hp, wp, image + c * hp * wp);
    });
    errors.rethrow();
  }

  // The im2col matrix of group g.
  PaddedIm2col group(int64_t g) const {
    return {image + g * (a.channels / a.groups) * hp * wp, tap_offset, wp, a.out_w, a.stride_h,
            a.stride_w};
  }
};

// One image, all groups, on `threads` threads (the padded copy is the calling thread's).
template <class T>
void conv2d_forward_image(const T* x, const T* weight, T* out, const Bias& bias,
                          const HalfConv2dArgs& a, int threads) {
  const int64_t out_group = a.out_channels / a.groups;
  const int64_t k_group = a.channels / a.groups * a.kh * a.kw, spatial = a.out_h * a.out_w;
  PaddedImage padded(a);
  padded.load(x, threads);
  for (int64_t g = 0; g < a.groups; ++g) {
    const Im2colB cols{padded.group(g)};
    gemm_one(DenseA<T>{weight + g * out_group * k_group, k_group, 1}, cols,
             out + g * out_group * spatial, spatial, int64_t(1), bias.at(g * out_group, 0),
             Plan{out_group, spatial, k_group, threads});
  }
}

template <class T> void conv2d_forward_typed(const HalfConv2dArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const T* weight = static_cast<const T*>(a.weight);
  T* out = static_cast<T*>(a.out);
  if (a.groups == a.channels) return depthwise_forward(x, weight, out, a);
  const Bias bias = a.bias == nullptr ? Bias{} : Bias{a.bias, 1, 0};
  const int64_t out_image = a.out_channels * a.out_h * a.out_w;
  if (a.batch >= a.threads) {
    // An image per thread at a time: no barrier inside an image, packing stays thread-local.
    ParallelErrors errors;
#pragma omp parallel for num_threads(a.threads) schedule(dynamic, 1)
    for (int64_t n = 0; n < a.batch; ++n) errors.run([&] {
      conv2d_forward_image(x + n * a.x_strides[0], weight, out + n * out_image, bias, a, 1);
    });
    errors.rethrow();
    return;
  }
  for (int64_t n = 0; n < a.batch; ++n)
    conv2d_forward_image(x + n * a.x_strides[0], weight, out + n * out_image, bias, a,
                         a.threads);
}

// dW^T += im2col(x[n]) @ grad[n]^T for images n0 .. n1, image after image and group by group
// (dW[g]^T is k_group x out_group), on `threads` threads (the padded copy is the calling
// thread's).
template <class T>
void weight_grad_images(const T* x, const T* grad, float* grad_weight, const HalfConv2dArgs& a,
                        int64_t n0, int64_t n1, int threads) {
  const int64_t c_group = a.channels / a.groups, out_group = a.out_channels / a.groups;
  const int64_t k_group = c_group * a.kh * a.kw, spatial = a.out_h * a.out_w;
  PaddedImage padded(a);
  for (int64_t n = n0; n < n1; ++n) {
    padded.load(x + n * a.x_strides[0], threads);
    for (int64_t g = 0; g < a.groups; ++g) {
      const Im2colA cols{padded.group(g)};
      const T* grad_g = grad + (n * a.out_channels + g * out_group) * spatial;
      Plan plan{k_group, out_group, spatial, threads};
      plan.accumulate = true;
      gemm_one(cols, DenseB<T>{grad_g, 1, spatial}, grad_weight + g * out_group * k_group,
               int64_t(1), k_group, Bias{}, plan);
    }
  }
}

template <class T> void conv2d_weight_grad_typed(const HalfConv2dWeightGradArgs& w) {
  const HalfConv2dArgs& a = w.conv;
  const int64_t size = a.out_channels * (a.channels / a.groups) * a.kh * a.kw;
  std::fill(w.grad_weight, w.grad_weight + size, 0.0f);
  const T* x = static_cast<const T*>(a.x);
  const T* grad = static_cast<const T*>(w.grad);
  if (a.groups == a.channels) return depthwise_weight_grad(x, grad, w.grad_weight, a);
  if (a.batch < a.threads)
    return weight_grad_images(x, grad, w.grad_weight, a, 0, a.batch, a.threads);
  // Fixed, equal runs of images per part, each summed into its own float32 dW (the first
  // part's is grad_weight itself), then added in part order: one parallel region per call (no
  // barrier per image for a descheduled thread to stall), and a result that does not depend
  // on timing.
  const int parts = a.threads;
  Buffer<float> partial;
  float* rest = partial.at_least((parts - 1) * size);
  ParallelErrors errors;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part) errors.run([&] {
    float* dw = part == 0 ? w.grad_weight : rest + (part - 1) * size;
    if (part > 0) std::fill(dw, dw + size, 0.0f);
    weight_grad_images(x, grad, dw, a, a.batch * part / parts, a.batch * (part + 1) / parts, 1);
  });
  errors.rethrow();
  for (int part = 1; part < parts; ++part)
    for (int64_t e = 0; e < size; ++e) w.grad_weight[e] += rest[(part - 1) * size + e];
}

}  // namespace half_gemm_detail

void half_conv2d_weight_grad_run(const HalfConv2dWeightGradArgs& w) {
  using namespace half_gemm_detail;
  if (w.conv.dtype == DType::f16) return conv2d_weight_grad_typed<f16_bits>(w);
  conv2d_weight_grad_typed<bf16_bits>(w);
}

void half_conv2d_forward_run(const HalfConv2dArgs& a) {
  using namespace half_gemm_detail;
  if (a.dtype == DType::f16) return conv2d_forward_typed<f16_bits>(a);
  conv2d_forward_typed<bf16_bits>(a);
}

}  // namespace KK_ISA
}  // namespace kernelkit
