// selective_state_update kernel, written once over 256-bit vectors and compiled once per ISA
// (selective_state_update.cpp, _avx2.cpp). Memory-bound: every state row (dstate values) is
// read and written once, W lanes at a time; x, dt, z, D, dt_bias are one value per row and the
// A/B/C rows are reused from cache. OpenMP over the (batch, head, dim) rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/vec.h"
#include "scan/selective_state_update.h"

namespace kernelkit {
namespace KK_ISA {
namespace ssu_detail {

template <class T> KK_INLINE T softplus(T v) {
  return v <= T(20) ? std::log1p(std::exp(v)) : v;  // the identity above 20, as mamba
}

// e**v lane by lane through libm (the scalar exp the brief allows until common/vec_math.h's
// polynomial exp_vec is merged; swapping it in is a one-line change here).
template <class V> KK_INLINE V exp_lanes(V v) {
  for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) v[i] = std::exp(v[i]);
  return v;
}

template <class V> KK_INLINE auto sum_lanes(V v) {
  auto s = v[0];
  for (int i = 1; i < int(sizeof(V) / sizeof(v[0])); ++i) s += v[i];
  return s;
}

// bfloat16 stores round by adding a bias to the bits (common/vec.h), which a NaN carrying a
// payload in its low half (from a float32 input) could turn into an infinity: make it quiet.
template <class S, class V> KK_INLINE V store_safe(V v) {
  if constexpr (std::is_same<S, bf16_bits>::value) {
    const V nan = Vec<float>::broadcast(std::numeric_limits<float>::quiet_NaN());
    return v == v ? v : nan;
  } else {
    return v;
  }
}

// state[n] <- e**(dt A[n]) state[n] + dt x B[n] over one row; returns sum_n C[n] state[n]
// from the new values before they are rounded to S. TIED: A is one value for the row.
template <bool TIED, class S, class T>
KK_INLINE T update_row(S* s, const T* A, const T* B, const T* C, T dt, T dtx, int64_t dstate) {
  using V = VecT<T>;
  constexpr int W = Vec<T>::W;
  const V dt_v = Vec<T>::broadcast(dt), dtx_v = Vec<T>::broadcast(dtx);
  const T tied = TIED ? std::exp(dt * A[0]) : T(0);
  const V tied_v = Vec<T>::broadcast(tied);
  V acc = Vec<T>::broadcast(T(0));
  int64_t n = 0;
  for (; n + W <= dstate; n += W) {
    const V e = TIED ? tied_v : exp_lanes(dt_v * load_as<T>(A + n));
    const V v = load_as<T>(s + n) * e + dtx_v * load_as<T>(B + n);
    store_vec(s + n, store_safe<S>(v));
    acc += v * load_as<T>(C + n);
  }
  T y = sum_lanes(acc);
  for (; n < dstate; ++n) {
    const T e = TIED ? tied : std::exp(dt * A[n]);
    const T v = to_compute<T>(s[n]) * e + dtx * B[n];
    s[n] = StoreAs<S>::from(v);
    y += v * C[n];
  }
  return y;
}

template <class S, class X, class T> void run(const SsuArgs& a) {
  S* state = static_cast<S*>(a.state);
  const X* x = static_cast<const X*>(a.x);
  const X* dt = static_cast<const X*>(a.dt);
  const X* z = static_cast<const X*>(a.z);
  X* out = static_cast<X*>(a.out);
  const T* A = static_cast<const T*>(a.A);
  const T* B = static_cast<const T*>(a.B);
  const T* C = static_cast<const T*>(a.C);
  const T* D = static_cast<const T*>(a.D);
  const T* bias = static_cast<const T*>(a.dt_bias);
  const int64_t rows = a.batch * a.nheads * a.dim;
  const int64_t heads_per_group = a.nheads / a.ngroups;
  const bool tied = a.A_stride_dstate == 0;
#pragma omp parallel for num_threads(a.threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t d = r % a.dim, bh = r / a.dim;
    const int64_t h = bh % a.nheads, b = bh / a.nheads;
    const int64_t hd = h * a.dim + d;
    T dtv = to_compute<T>(dt[r]) + (bias ? bias[hd] : T(0));
    if (a.dt_softplus) dtv = softplus(dtv);
    const T xv = to_compute<T>(x[r]);
    S* s = state + b * a.state_stride_batch + h * a.state_stride_head + d * a.state_stride_dim;
    const T* Ar = A + h * a.A_stride_head + d * a.A_stride_dim;
    const int64_t bc = (b * a.ngroups + h / heads_per_group) * a.dstate;
    T y = tied ? update_row<true>(s, Ar, B + bc, C + bc, dtv, dtv * xv, a.dstate)
               : update_row<false>(s, Ar, B + bc, C + bc, dtv, dtv * xv, a.dstate);
    if (D) y += D[hd] * xv;
    if (z) {
      const T zv = to_compute<T>(z[r]);
      y *= zv / (T(1) + std::exp(-zv));
    }
    out[r] = StoreAs<X>::from(y);
  }
}

template <class S> void run_state(const SsuArgs& a) {
  switch (a.x_dtype) {
    case DType::f16: return run<S, f16_bits, float>(a);
    case DType::bf16: return run<S, bf16_bits, float>(a);
    default: return run<S, float, float>(a);
  }
}

}  // namespace ssu_detail

void selective_state_update_run(const SsuArgs& a) {
  using namespace ssu_detail;
  switch (a.state_dtype) {
    case DType::f64: return run<double, double, double>(a);
    case DType::f16: return run_state<f16_bits>(a);
    case DType::bf16: return run_state<bf16_bits>(a);
    default: return run_state<float>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
