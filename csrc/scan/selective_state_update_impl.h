// selective_state_update kernel, written once over 256-bit vectors and compiled once per ISA
// (selective_state_update.cpp, _avx2.cpp). Memory-bound: every state row (dstate values) is
// read and written once, W lanes at a time; x, dt, z, D, dt_bias are one value per row (their
// math runs on W rows at once) and the A/B/C rows are reused from cache. OpenMP over blocks of
// W (batch, head, dim) rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/parallel.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "scan/selective_state_update.h"

namespace kernelkit {
namespace KK_ISA {
namespace ssu_detail {

// state[n] <- e**(dt A[n]) state[n] + dt x B[n] over one row; returns sum_n C[n] state[n]
// from the new values before they are rounded to S. TIED: A is one value for the row, and
// tied = e**(dt A[0]).
template <bool TIED, class S, class T>
KK_INLINE T update_row(S* s, const T* A, const T* B, const T* C, T dt, T dtx, T tied,
                       int64_t dstate) {
  using V = VecT<T>;
  constexpr int W = Vec<T>::W;
  const V dt_v = Vec<T>::broadcast(dt), dtx_v = Vec<T>::broadcast(dtx);
  const V tied_v = Vec<T>::broadcast(tied);
  V acc = Vec<T>::broadcast(T(0));
  int64_t n = 0;
  for (; n + W <= dstate; n += W) {
    const V e = TIED ? tied_v : exp_vec(dt_v * load_as<T>(A + n));
    const V v = load_as<T>(s + n) * e + dtx_v * load_as<T>(B + n);
    store_vec_checked(s + n, v);
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

// The rows (batch b, head-channel j0 .. j0 + count - 1), count <= W: the per-row math (dt,
// softplus, the tied exp, D, silu) runs on W rows at once, the state rows one by one.
template <class S, class X, class T, bool TIED, int NS>
void update_rows(const SsuArgs& a, int64_t b, int64_t j0, int count) {
  using V = VecT<T>;
  constexpr int W = Vec<T>::W;
  const int64_t r0 = b * a.nheads * a.dim + j0;
  const X* x = static_cast<const X*>(a.x) + r0;
  const X* dt = static_cast<const X*>(a.dt) + r0;
  const X* z = a.z ? static_cast<const X*>(a.z) + r0 : nullptr;
  const T* A = static_cast<const T*>(a.A);
  const T* D = a.D ? static_cast<const T*>(a.D) + j0 : nullptr;
  const T* bias = a.dt_bias ? static_cast<const T*>(a.dt_bias) + j0 : nullptr;
  const int64_t heads_per_group = a.nheads / a.ngroups;
  // Per-row offsets, walking (h, d) from j0 without a division per row.
  int64_t s_off[W], a_off[W], bc_off[W];
  int64_t h = j0 / a.dim, d = j0 % a.dim;
  V xv{}, dtv{}, zv{}, dv{}, a0{};
  for (int i = 0; i < count; ++i) {
    s_off[i] = b * a.state_stride_batch + h * a.state_stride_head + d * a.state_stride_dim;
    a_off[i] = h * a.A_stride_head + d * a.A_stride_dim;
    bc_off[i] = (b * a.ngroups + h / heads_per_group) * a.dstate;
    xv[i] = to_compute<T>(x[i]);
    dtv[i] = to_compute<T>(dt[i]) + (bias ? bias[i] : T(0));
    if (z) zv[i] = to_compute<T>(z[i]);
    if (D) dv[i] = D[i];
    if (TIED) a0[i] = A[a_off[i]];
    if (++d == a.dim) d = 0, ++h;
  }
  if (a.dt_softplus) dtv = softplus_vec(dtv);
  // The row loop reads its scalars from arrays: lane accesses at a run-time index would go
  // through the stack anyway.
  T dts[W], dtxs[W], e0s[W], ys[W] = {};
  std::memcpy(dts, &dtv, sizeof dts);
  const V dtx = dtv * xv;
  std::memcpy(dtxs, &dtx, sizeof dtxs);
  if (TIED) {
    const V e0 = exp_vec(dtv * a0);
    std::memcpy(e0s, &e0, sizeof e0s);
  }
  S* state = static_cast<S*>(a.state);
  const T* B = static_cast<const T*>(a.B);
  const T* C = static_cast<const T*>(a.C);
  const int64_t dstate = NS ? NS : a.dstate;
  for (int i = 0; i < count; ++i) {
    ys[i] = update_row<TIED>(state + s_off[i], A + a_off[i], B + bc_off[i], C + bc_off[i],
                             dts[i], dtxs[i], TIED ? e0s[i] : T(0), dstate);
  }
  V y;
  std::memcpy(&y, ys, sizeof y);
  y += dv * xv;
  if (z) y *= silu_vec(zv);
  X* out = static_cast<X*>(a.out) + r0;
  for (int i = 0; i < count; ++i) out[i] = StoreAs<X>::from(y[i]);
}

// TIED: A has one value per row (dstate stride 0). NS: dstate as a compile-time constant
// (Mamba's usual 16), 0 for any.
template <class S, class X, class T, bool TIED, int NS> void run_blocks(const SsuArgs& a) {
  constexpr int W = Vec<T>::W;
  const int64_t per_batch = a.nheads * a.dim;
  const int64_t blocks = (per_batch + W - 1) / W;
  ParallelErrors errors;
#pragma omp parallel for num_threads(a.threads) schedule(static)
  for (int64_t k = 0; k < a.batch * blocks; ++k) errors.run([&] {
    const int64_t b = k / blocks, j0 = (k % blocks) * W;
    update_rows<S, X, T, TIED, NS>(a, b, j0, int(std::min<int64_t>(W, per_batch - j0)));
  });
  errors.rethrow();
}

template <class S, class X, class T> void run(const SsuArgs& a) {
  const bool tied = a.A_stride_dstate == 0;
  if (a.dstate == 16)
    return tied ? run_blocks<S, X, T, true, 16>(a) : run_blocks<S, X, T, false, 16>(a);
  tied ? run_blocks<S, X, T, true, 0>(a) : run_blocks<S, X, T, false, 0>(a);
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
