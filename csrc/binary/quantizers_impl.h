// Quantizer kernels (quantizers.h), written once and compiled per ISA (quantizers.cpp, _avx2.cpp,
// _avx512.cpp). One pass: every element read once and written once, plus one mask bit (1/32 of
// a float32's bytes). Blocks of 32 elements are computed in a branch-free loop the compiler
// vectorizes for the TU's ISA (the transcendental surrogates stay scalar libm calls), then
// their 32 bits are packed into one word.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(KK_ISA_AVX2)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "binary/quantizers.h"
#include "common/half_scalar.h"
#include "common/parallel.h"
#include "common/vec.h"

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including binary/quantizers_impl.h"
#endif

namespace kernelkit {
namespace KK_ISA {
namespace quantizers_detail {

// Calls that move fewer bytes run on one thread (thread start-up costs more than the pass).
constexpr int64_t kParallelBytes = int64_t(256) << 10;
constexpr int64_t kBlock = 32;  // elements per mask word

constexpr uint32_t kBitOf[kBlock] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
    1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
    1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

template <class T> struct Compute { using type = float; };
template <> struct Compute<double> { using type = double; };

// sign with sign(0) = 0 and sign(NaN) = NaN (tf.sign), for ste_tern's formula (a NaN threshold,
// from ternary weight networks on data with a NaN, makes every output NaN, as in larq).
template <class S> inline S sign0(S v) {
  const S s = S(v > 0) - S(v < 0);
  return v == v ? s : v;
}

// A block of m storage elements as compute values and back: whole blocks of the 16-bit
// formats convert 8 at a time (F16C / shifts, vec.h), everything else element by element.
template <class T> constexpr bool kHalf =
    std::is_same_v<T, f16_bits> || std::is_same_v<T, bf16_bits>;

template <class T, class S> inline void load_block(const T* p, int64_t m, S* dst) {
  if constexpr (kHalf<T>) {
    if (m == kBlock) {
      for (int k = 0; k < kBlock; k += 8) {
        const vf8 v = load_as<float>(p + k);
        std::memcpy(dst + k, &v, sizeof v);
      }
      return;
    }
  }
  for (int64_t j = 0; j < m; ++j) dst[j] = to_compute<S>(p[j]);
}

template <class T, class S> inline void store_block(T* p, int64_t m, const S* src) {
  if constexpr (kHalf<T>) {
    if (m == kBlock) {
      for (int k = 0; k < kBlock; k += 8) {
        vf8 v;
        std::memcpy(&v, src + k, sizeof v);
        store_vec_checked(p + k, v);
      }
      return;
    }
  }
  for (int64_t j = 0; j < m; ++j) p[j] = StoreAs<T>::template from<S>(src[j]);
}

// tf.round (half to even): rint in the default rounding mode. Unlike nearbyint (which must not
// raise inexact, so stays a libm call), rint inlines to vroundps / vrndscaleps and vectorizes.
template <class S> inline S round_half_even(S v) { return std::rint(v); }

// One element of the forward; sets *bit to the element's mask bit. K is a template argument
// so that each kind's block loop is its own branch-free (vectorizable) loop.
template <QuantKind K, class S>
inline S forward_one(S x, S param, S clip, bool clipped, uint32_t* bit) {
  // Bitwise | and &, not || and &&: no short-circuit branch, so the loop if-converts.
  const bool in_clip = !clipped | (std::fabs(x) <= clip);
  S v;
  if constexpr (K == QuantKind::ste_heaviside) {
    v = x > 0 ? S(1) : S(0);
    *bit = in_clip;
  } else if constexpr (K == QuantKind::ste_tern) {
    v = sign0(sign0(x + param) + sign0(x - param));
    *bit = in_clip;
  } else if constexpr (K == QuantKind::dorefa) {
    // clamp(x, 0, 1) * n as clamp(x * n, 0, n): the same value (x * n is monotone in x), the
    // product outside the selects, and selects that keep a NaN, so no NaN select is needed:
    // with one, GCC sinks the arithmetic under it and then cannot vectorize it for AVX2.
    *bit = (x >= 0) & (x <= 1);
    const S y = x * param;
    const S lo = y < 0 ? S(0) : y;
    return round_half_even(lo > param ? param : lo) / param;
  } else if constexpr (K == QuantKind::periodic_sign) {
    const S sine = std::sin(param * x);  // NaN for x = +-inf
    v = sine >= 0 ? S(1) : sine < 0 ? S(-1) : sine;
    *bit = 0;
  } else {  // ste_sign, approx_sign, swish_sign
    v = x >= 0 ? S(1) : S(-1);
    *bit = in_clip;
  }
  return x == x ? v : x;  // NaN in, NaN out
}

template <QuantKind K, class S> inline S backward_one(S g, S x, S param) {
  if constexpr (K == QuantKind::approx_sign) {
    const S ax = std::fabs(x);
    return ax <= 1 ? g * (2 - 2 * ax) : S(0);
  } else if constexpr (K == QuantKind::swish_sign) {
    const S bx = param * x;
    return g * (param * (2 - bx * std::tanh(bx / 2)) / (1 + std::cosh(bx)));
  } else {  // periodic_sign
    return g * param * std::cos(param * x);
  }
}

// The float32 sign kinds (ste_sign, approx_sign, swish_sign, ste_heaviside) on a whole block of
// 32, unscaled: compares into masks (AVX-512 mask registers, AVX2 movemasks), blends of the
// constants, NaN lanes blended back in. Returns the block's mask word.
template <QuantKind K> constexpr bool kSignKind =
    K == QuantKind::ste_sign || K == QuantKind::approx_sign || K == QuantKind::swish_sign ||
    K == QuantKind::ste_heaviside;

#if defined(KK_ISA_AVX512)
template <QuantKind K>
inline uint32_t sign_block(const float* x, float* out, float clip, bool clipped) {
  constexpr bool heaviside = K == QuantKind::ste_heaviside;
  const __m512 hi = _mm512_set1_ps(1.0f), lo = _mm512_set1_ps(heaviside ? 0.0f : -1.0f);
  const __m512 vclip = _mm512_set1_ps(clip);
  uint32_t word = 0;
  for (int k = 0; k < 2; ++k) {
    const __m512 v = _mm512_loadu_ps(x + 16 * k);
    const __mmask16 up = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), heaviside ? _CMP_GT_OQ : _CMP_GE_OQ);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512 r = _mm512_mask_blend_ps(up, lo, hi);
    r = _mm512_mask_blend_ps(nan, r, v);
    _mm512_storeu_ps(out + 16 * k, r);
    const __mmask16 in = clipped ? _mm512_cmp_ps_mask(_mm512_abs_ps(v), vclip, _CMP_LE_OQ)
                                 : __mmask16(0xffff);
    word |= uint32_t(in) << (16 * k);
  }
  return word;
}
#elif defined(KK_ISA_AVX2)
template <QuantKind K>
inline uint32_t sign_block(const float* x, float* out, float clip, bool clipped) {
  constexpr bool heaviside = K == QuantKind::ste_heaviside;
  const __m256 hi = _mm256_set1_ps(1.0f), lo = _mm256_set1_ps(heaviside ? 0.0f : -1.0f);
  const __m256 vclip = _mm256_set1_ps(clip);
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  uint32_t word = 0;
  for (int k = 0; k < 4; ++k) {
    const __m256 v = _mm256_loadu_ps(x + 8 * k);
    const __m256 up = _mm256_cmp_ps(v, _mm256_setzero_ps(), heaviside ? _CMP_GT_OQ : _CMP_GE_OQ);
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    __m256 r = _mm256_blendv_ps(lo, hi, up);
    r = _mm256_blendv_ps(r, v, nan);
    _mm256_storeu_ps(out + 8 * k, r);
    const int in = clipped ? _mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_and_ps(v, magnitude), vclip, _CMP_LE_OQ)) : 0xff;
    word |= uint32_t(in) << (8 * k);
  }
  return word;
}
#endif

// The blocks [b0, b1) of n elements; f(begin, end, word) handles one block.
template <class F> void split_blocks(int64_t n, int64_t bytes, int threads, const F& f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (bytes < kParallelBytes) threads = 1;
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  auto range = [&](int64_t t) {
    const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    for (int64_t b = b0; b < b1; ++b) f(b * kBlock, std::min(n, (b + 1) * kBlock), b);
  };
#if defined(_OPENMP)
  if (nt > 1) {
    ParallelErrors errors;
#pragma omp parallel for num_threads(int(nt)) schedule(static)
    for (int64_t t = 0; t < nt; ++t) errors.run([&] { range(t); });
    errors.rethrow();
    return;
  }
#endif
  range(0);
}

template <QuantKind K, class T> void forward(const QuantizeArgs& a) {
  using S = typename Compute<T>::type;
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const S* scale = static_cast<const S*>(a.scale);
  const S param = S(a.param), clip = S(a.clip);
  const bool clipped = a.clipped;
  split_blocks(a.n, a.n * int64_t(sizeof(T)), a.threads, [&](int64_t i0, int64_t i1, int64_t w) {
    const int64_t m = i1 - i0;
#if defined(KK_ISA_AVX2)
    if constexpr (std::is_same_v<T, float> && kSignKind<K>) {
      if (m == kBlock && scale == nullptr) {
        const uint32_t word = sign_block<K>(x + i0, out + i0, clip, clipped);
        if (a.mask != nullptr) a.mask[w] = int32_t(word);
        return;
      }
    }
#endif
    S xs[kBlock], v[kBlock];
    uint32_t bits[kBlock];
    load_block(x + i0, m, xs);
    for (int64_t j = 0; j < m; ++j) v[j] = forward_one<K>(xs[j], param, clip, clipped, &bits[j]);
    if (scale != nullptr) {
      int64_t c = i0 % a.channels;
      for (int64_t j = 0; j < m; ++j) {
        v[j] *= scale[c];
        if (++c == a.channels) c = 0;
      }
    }
    // v[:m] is set above (all of v when it is stored whole); GCC cannot see it for dorefa.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    store_block(out + i0, m, v);
#pragma GCC diagnostic pop
    if (a.mask != nullptr) {
      uint32_t word = 0;
      for (int j = 0; j < int(m); ++j) word |= bits[j] << j;
      a.mask[w] = int32_t(word);
    }
  });
}

template <QuantKind K, class T> void backward(const QuantizeBackwardArgs& a) {
  using S = typename Compute<T>::type;
  const T* g = static_cast<const T*>(a.grad);
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const S* scale = static_cast<const S*>(a.scale);
  const S param = S(a.param);
  split_blocks(a.n, a.n * int64_t(sizeof(T)), a.threads, [&](int64_t i0, int64_t i1, int64_t w) {
    S v[kBlock];
    const int64_t m = i1 - i0;
    load_block(g + i0, m, v);
    if (a.mask == nullptr) {
      S xs[kBlock];
      load_block(x + i0, m, xs);
      for (int64_t j = 0; j < m; ++j) v[j] = backward_one<K>(v[j], xs[j], param);
      store_block(out + i0, m, v);
      return;
    }
    if (scale != nullptr) {
      int64_t c = i0 % a.channels;
      for (int64_t j = 0; j < m; ++j) {
        v[j] *= scale[c];
        if (++c == a.channels) c = 0;
      }
    }
    // The mask after the scale: a blocked element's gradient is 0 even where scale is NaN.
    // Bit j tested against a constant per lane (an and + compare: no variable shift, which
    // SSE2 lacks), so that every ISA vectorizes the select.
    const uint32_t word = uint32_t(a.mask[w]);
    for (int64_t j = 0; j < m; ++j) v[j] = (word & kBitOf[j]) != 0 ? v[j] : S(0);
    store_block(out + i0, m, v);
  });
}

template <QuantKind K> struct Forward {
  template <class T> static void run(const QuantizeArgs& a) { forward<K, T>(a); }
};
template <QuantKind K> struct Backward {
  template <class T> static void run(const QuantizeBackwardArgs& a) { backward<K, T>(a); }
};

template <class F, class A> void by_dtype(const A& a) {
  switch (a.dtype) {
    case DType::f32: return F::template run<float>(a);
    case DType::f64: return F::template run<double>(a);
    case DType::f16: return F::template run<f16_bits>(a);
    case DType::bf16: return F::template run<bf16_bits>(a);
  }
}

// The clipped kinds' backward is the mask's (whichever kind made it): one instance.
template <template <QuantKind> class F, class A> void by_kind(const A& a) {
  switch (a.kind) {
    case QuantKind::ste_sign: return by_dtype<F<QuantKind::ste_sign>>(a);
    case QuantKind::approx_sign: return by_dtype<F<QuantKind::approx_sign>>(a);
    case QuantKind::swish_sign: return by_dtype<F<QuantKind::swish_sign>>(a);
    case QuantKind::ste_heaviside: return by_dtype<F<QuantKind::ste_heaviside>>(a);
    case QuantKind::ste_tern: return by_dtype<F<QuantKind::ste_tern>>(a);
    case QuantKind::dorefa: return by_dtype<F<QuantKind::dorefa>>(a);
    case QuantKind::periodic_sign: return by_dtype<F<QuantKind::periodic_sign>>(a);
  }
}

}  // namespace quantizers_detail

void quantize_run(const QuantizeArgs& a) { quantizers_detail::by_kind<quantizers_detail::Forward>(a); }

void quantize_backward_run(const QuantizeBackwardArgs& a) {
  using namespace quantizers_detail;
  if (a.mask != nullptr) return by_dtype<Backward<QuantKind::ste_sign>>(a);
  by_kind<Backward>(a);
}

}  // namespace KK_ISA
}  // namespace kernelkit
