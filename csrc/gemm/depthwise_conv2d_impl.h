// Depthwise convolution (groups == channels, out_channels = multiplier * channels), the fast
// path of half_conv2d: direct, not a GEMM (each group's product would be 1 x kh*kw). Per
// (image, channel) the zero-padded plane is converted to float32 once (it fits in L1/L2); each
// output row is summed tap by tap in a float32 row buffer, vectorized along the row at unit
// stride. One read of x, one write of out, kh * kw FMAs per output. The weight gradient is a
// dot product per tap over the output-gradient plane, summed over the batch in float32 by the
// thread that owns the channel (deterministic). Included by half_conv2d_impl.h.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/parallel.h"
#include "gemm/gemm_core_impl.h"
#include "gemm/half_conv2d.h"

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

// out (hp, wp) = one channel plane of x (strides xs[2], xs[3]) zero-padded, as float32.
template <class T>
void pad_plane(const T* x, const int64_t* xs, const HalfConv2dArgs& a, int64_t hp, int64_t wp,
               float* out) {
  for (int64_t row = 0; row < hp; ++row) {
    float* o = out + row * wp;
    const int64_t ih = row - a.pad_h;
    if (ih < 0 || ih >= a.height) {
      std::fill(o, o + wp, 0.0f);
      continue;
    }
    const T* src = x + ih * xs[2];
    std::fill(o, o + a.pad_w, 0.0f);
    float* inner = o + a.pad_w;
    int64_t w = 0;
    if (xs[3] == 1)
      for (; w + 8 <= a.width; w += 8) store_vec(inner + w, load_as<float>(src + w));
    for (; w < a.width; ++w) inner[w] = element(src + w * xs[3]);
    std::fill(inner + a.width, o + wp, 0.0f);
  }
}


constexpr int kSlotPlane = 15, kSlotRows = 16;

// acc[0:n] += w * src[0:n * stride : stride]
KK_INLINE void axpy_strided(float* acc, float w, const float* src, int64_t n, int64_t stride) {
  int64_t i = 0;
  if (stride == 1) {
    const vf8 wv = Vec<float>::broadcast(w);
    for (; i + 8 <= n; i += 8) store_vec(acc + i, load_as<float>(acc + i) + wv * load_as<float>(src + i));
  }
  for (; i < n; ++i) acc[i] += w * src[i * stride];
}

// sum of g[0:n] * src[0:n * stride : stride]
KK_INLINE float dot_strided(const float* g, const float* src, int64_t n, int64_t stride) {
  int64_t i = 0;
  float sum = 0.0f;
  if (stride == 1) {
    vf8 acc = Vec<float>::broadcast(0.0f);
    for (; i + 8 <= n; i += 8) acc += load_as<float>(g + i) * load_as<float>(src + i);
    for (int e = 0; e < 8; ++e) sum += acc[e];
  }
  for (; i < n; ++i) sum += g[i] * src[i * stride];
  return sum;
}

template <class T>
void depthwise_forward(const T* x, const T* weight, T* out, const HalfConv2dArgs& a) {
  const int64_t hp = a.height + 2 * a.pad_h, wp = a.width + 2 * a.pad_w;
  const int64_t mult = a.out_channels / a.channels, taps = a.kh * a.kw;
  // The padded plane is per thread scratch, allocated inside the region: its failure (huge
  // padding) travels out through errors, and every later item is skipped.
  ParallelErrors errors;
#pragma omp parallel num_threads(a.threads)
  {
    float* plane = nullptr;
    float* row = nullptr;
    errors.run([&] {
      plane = thread_buffer<float, kSlotPlane>(hp * wp);
      row = thread_buffer<float, kSlotRows>(a.out_w);
    });
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < a.batch; ++n) {
      for (int64_t c = 0; c < a.channels; ++c) errors.run([&] {
        pad_plane(x + n * a.x_strides[0] + c * a.x_strides[1], a.x_strides, a, hp, wp, plane);
        for (int64_t oc = c * mult; oc < (c + 1) * mult; ++oc) {
          const T* w = weight + oc * taps;
          T* o = out + (n * a.out_channels + oc) * a.out_h * a.out_w;
          for (int64_t oh = 0; oh < a.out_h; ++oh) {
            std::fill(row, row + a.out_w, a.bias != nullptr ? a.bias[oc] : 0.0f);
            for (int64_t r = 0; r < a.kh; ++r) {
              const float* src = plane + (oh * a.stride_h + r * a.dilation_h) * wp;
              for (int64_t s = 0; s < a.kw; ++s)
                axpy_strided(row, element(w + r * a.kw + s), src + s * a.dilation_w, a.out_w,
                             a.stride_w);
            }
            store_row(row, Bias{}, a.out_w, o + oh * a.out_w, 1, false);
          }
        }
      });
    }
  }
  errors.rethrow();
}

template <class T>
void depthwise_weight_grad(const T* x, const T* grad, float* grad_weight,
                           const HalfConv2dArgs& a) {
  const int64_t hp = a.height + 2 * a.pad_h, wp = a.width + 2 * a.pad_w;
  const int64_t mult = a.out_channels / a.channels, taps = a.kh * a.kw;
  const int64_t spatial = a.out_h * a.out_w;
  ParallelErrors errors;
#pragma omp parallel num_threads(a.threads)
  {
    float* plane = nullptr;
    float* g = nullptr;
    errors.run([&] {
      plane = thread_buffer<float, kSlotPlane>(hp * wp);
      g = thread_buffer<float, kSlotRows>(spatial);
    });
#pragma omp for schedule(static)
    for (int64_t c = 0; c < a.channels; ++c) errors.run([&] {
      for (int64_t n = 0; n < a.batch; ++n) {
        pad_plane(x + n * a.x_strides[0] + c * a.x_strides[1], a.x_strides, a, hp, wp, plane);
        for (int64_t oc = c * mult; oc < (c + 1) * mult; ++oc) {
          const T* go = grad + (n * a.out_channels + oc) * spatial;
          int64_t i = 0;
          for (; i + 8 <= spatial; i += 8) store_vec(g + i, load_as<float>(go + i));
          for (; i < spatial; ++i) g[i] = element(go + i);
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t r = t / a.kw, s = t % a.kw;
            float sum = 0.0f;
            for (int64_t oh = 0; oh < a.out_h; ++oh)
              sum += dot_strided(g + oh * a.out_w,
                                 plane + (oh * a.stride_h + r * a.dilation_h) * wp +
                                     s * a.dilation_w,
                                 a.out_w, a.stride_w);
            grad_weight[oc * taps + t] += sum;
          }
        }
      }
    });
  }
  errors.rethrow();
}

}  // namespace half_gemm_detail
}  // namespace KK_ISA
}  // namespace kernelkit
