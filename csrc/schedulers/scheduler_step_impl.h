// The fused scheduler step (scheduler_step.h), written once over vec.h's vectors and
// compiled per ISA (scheduler_step.cpp, _avx2.cpp, _avx512.cpp). One pass: each operand is
// read once and out (and store) written once; the operand count and the store / out mode are
// template parameters, so the inner loop has no branches.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/parallel.h"
#include "common/vec.h"
#include "schedulers/scheduler_step.h"

namespace kernelkit {
namespace KK_ISA {
namespace scheduler_step_detail {

// Below this many elements per thread a call uses fewer threads (a fork costs a few us).
constexpr int64_t kMinPerThread = int64_t(1) << 16;

enum Mode { kOut = 0, kOutStore = 1, kStoreOnly = 2 };

template <class T> struct Compute { using S = float; };
template <> struct Compute<double> { using S = double; };

template <class T, class S, int NH, bool AUX, int MODE>
void run_range(const SchedulerStepArgs& a, int64_t begin, int64_t end) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const T* x = static_cast<const T*>(a.x);
  const T* m = static_cast<const T*>(a.m);
  const T* aux = static_cast<const T*>(a.aux);
  T* out = static_cast<T*>(a.out);
  S* store = static_cast<S*>(a.store);
  const S* h[kSchedulerMaxHistory];
  S ch[kSchedulerMaxHistory];
  for (int k = 0; k < kSchedulerMaxHistory; ++k) {
    h[k] = static_cast<const S*>(a.hist[k]);
    ch[k] = S(a.c_hist[k]);
  }
  const S px = S(a.p_x), pm = S(a.p_m), cx = S(a.c_x), cc = S(a.c_conv), ca = S(a.c_aux);
  const V vpx = Vec<S>::broadcast(px), vpm = Vec<S>::broadcast(pm);
  const V vcx = Vec<S>::broadcast(cx), vcc = Vec<S>::broadcast(cc);
  const V vca = Vec<S>::broadcast(ca);
  V vch[kSchedulerMaxHistory];
  for (int k = 0; k < kSchedulerMaxHistory; ++k) vch[k] = Vec<S>::broadcast(ch[k]);
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    const V vx = load_as<S>(x + i);
    const V conv = vpx * vx + vpm * load_as<S>(m + i);
    if constexpr (MODE != kOut) store_vec(store + i, conv);
    if constexpr (MODE != kStoreOnly) {
      V acc = vcx * vx + vcc * conv;
      for (int k = 0; k < NH; ++k) acc += vch[k] * load_as<S>(h[k] + i);
      if constexpr (AUX) acc += vca * load_as<S>(aux + i);
      store_vec_checked(out + i, acc);
    }
  }
  for (; i < end; ++i) {
    const S sx = to_compute<S>(x[i]);
    const S conv = px * sx + pm * to_compute<S>(m[i]);
    if constexpr (MODE != kOut) store[i] = conv;
    if constexpr (MODE != kStoreOnly) {
      S acc = cx * sx + cc * conv;
      for (int k = 0; k < NH; ++k) acc += ch[k] * h[k][i];
      if constexpr (AUX) acc += ca * to_compute<S>(aux[i]);
      out[i] = StoreAs<T>::from(acc);
    }
  }
}

template <class T, int NH, bool AUX, int MODE> void run_all(const SchedulerStepArgs& a) {
  using S = typename Compute<T>::S;
  const int64_t useful = std::max<int64_t>(1, a.n / kMinPerThread);
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(a.threads, useful)));
  if (threads == 1) return run_range<T, S, NH, AUX, MODE>(a, 0, a.n);
  // Chunks of whole cache lines per thread.
  const int64_t per = ((a.n + threads - 1) / threads + 15) / 16 * 16;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t)
    errors.run([&] {
      const int64_t b = std::min<int64_t>(a.n, t * per), e = std::min<int64_t>(a.n, b + per);
      if (b < e) run_range<T, S, NH, AUX, MODE>(a, b, e);
    });
  errors.rethrow();
}

template <class T, int NH, bool AUX> void by_mode(const SchedulerStepArgs& a) {
  if (a.out == nullptr) return run_all<T, 0, false, kStoreOnly>(a);
  if (a.store != nullptr) return run_all<T, NH, AUX, kOutStore>(a);
  run_all<T, NH, AUX, kOut>(a);
}

template <class T, bool AUX> void by_hist(const SchedulerStepArgs& a) {
  switch (a.n_hist) {
    case 0: return by_mode<T, 0, AUX>(a);
    case 1: return by_mode<T, 1, AUX>(a);
    case 2: return by_mode<T, 2, AUX>(a);
    case 3: return by_mode<T, 3, AUX>(a);
    default: return by_mode<T, 4, AUX>(a);
  }
}

template <class T> void by_aux(const SchedulerStepArgs& a) {
  if (a.aux != nullptr) return by_hist<T, true>(a);
  by_hist<T, false>(a);
}

}  // namespace scheduler_step_detail

void scheduler_step_run(const SchedulerStepArgs& a) {
  using namespace scheduler_step_detail;
  switch (a.dtype) {
    case DType::f32: return by_aux<float>(a);
    case DType::f64: return by_aux<double>(a);
    case DType::f16: return by_aux<f16_bits>(a);
    case DType::bf16: return by_aux<bf16_bits>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
