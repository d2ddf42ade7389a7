// 2-D linear scan kernels, written once over common/vec.h and compiled once per ISA. Row by row
// in t: b = a_t[t] * h[t-1] + x[t] is elementwise (vectors along V), then the scan along V
// (h[v] = a_v[v] h[v-1] + b[v]) runs as scalar FMA chains of kChains batch items interleaved,
// so the FMA latency is hidden without moving data into lanes. Memory traffic: each input read
// once and h written once (the backward also reads h and writes da_t, da_v); h[t-1] and the
// column block being scanned are re-read from L1.
//
// Why not 8 batch items in the 8 lanes of a vector: with V innermost in memory that needs an
// 8x8 transpose of a_v and b in and of h out (about 1.1 shuffles per element on the one
// shuffle port), while a scalar chain step is 2 loads + 1 FMA + 1 store (about 1 cycle per
// element with the chains interleaved): both are well under the 16 bytes per element of
// memory traffic, so the simpler scheme wins (measured: the whole forward 0.6 ns per element
// on one core with the data in cache, against 3+ ns per element from DRAM).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/parallel.h"
#include "common/vec.h"
#include "scan/linear_scan_2d.h"

namespace kernelkit {
namespace KK_ISA {
namespace scan2d_detail {

// Batch items whose V-chains run interleaved: 4 independent FMAs in flight cover its latency.
constexpr int kChains = 4;
// Columns per block: the block of every chain's rows stays in L1 between its passes.
constexpr int64_t kBlock = 512;

template <class T> KK_INLINE const T* row(const Scan2dPlane& p, int64_t b, int64_t r) {
  return static_cast<const T*>(p.data) + b * p.batch_stride + r * p.row_stride;
}
template <class T> KK_INLINE T* row(const Scan2dOut& p, int64_t b, int64_t r) {
  return static_cast<T*>(p.data) + b * p.batch_stride + r * p.row_stride;
}
template <class S, class T> KK_INLINE S edge(const Scan2dEdge& e, int64_t b, int64_t i) {
  return to_compute<S>(static_cast<const T*>(e.data)[b * e.batch_stride + i * e.stride]);
}

template <class S, class T> KK_INLINE S scalar(const T* p) { return to_compute<S>(*p); }

// dst[v] = c[v] * y[v] + z[v] in S; y may be storage or compute type.
template <class S, class C, class Y, class Z>
void fma_row(S* dst, const C* c, const Y* y, const Z* z, int64_t n) {
  constexpr int W = Vec<S>::W;
  int64_t v = 0;
  for (; v + W <= n; v += W)
    store_vec(dst + v, load_as<S>(c + v) * load_as<S>(y + v) + load_as<S>(z + v));
  for (; v < n; ++v) dst[v] = scalar<S>(c + v) * scalar<S>(y + v) + scalar<S>(z + v);
}

// dst[v] = g[v] * y[v], stored as the storage type.
template <class S, class T, class Y>
void mul_row(T* dst, const S* g, const Y* y, int64_t n) {
  constexpr int W = Vec<S>::W;
  int64_t v = 0;
  for (; v + W <= n; v += W) store_vec(dst + v, load_as<S>(g + v) * load_as<S>(y + v));
  for (; v < n; ++v) dst[v] = StoreAs<T>::from(g[v] * scalar<S>(y + v));
}

// dst[v] = src[v], converting between storage and compute types.
template <class S, class D, class Src>
void copy_row(D* dst, const Src* src, int64_t n) {
  constexpr int W = Vec<S>::W;
  int64_t v = 0;
  for (; v + W <= n; v += W) store_vec(dst + v, load_as<S>(src + v));
  for (; v < n; ++v) dst[v] = StoreAs<D>::from(scalar<S>(src + v));
}

template <class T> KK_INLINE void zero_row(T* dst, int64_t n) {
  std::fill(dst, dst + n, StoreAs<T>::from(0.0f));
}

// h[k][v] = c[k][v] * h[k][v-1] + h[k][v] for v = 0 .. n-1 (h[k][-1] = carry[k]), N chains
// in lockstep; carry holds the last values on return.
template <int N, class S>
KK_INLINE void scan_up(S* const* h, const S* const* c, S* carry, int64_t n) {
  S r[N];
  for (int k = 0; k < N; ++k) r[k] = carry[k];
  for (int64_t v = 0; v < n; ++v) {
#pragma GCC unroll 8
    for (int k = 0; k < N; ++k) {
      r[k] = c[k][v] * r[k] + h[k][v];
      h[k][v] = r[k];
    }
  }
  for (int k = 0; k < N; ++k) carry[k] = r[k];
}

// The same from v = n-1 down to 0, with g[k][n] = carry[k].
template <int N, class S>
KK_INLINE void scan_down(S* const* g, const S* const* c, S* carry, int64_t n) {
  S r[N];
  for (int k = 0; k < N; ++k) r[k] = carry[k];
  for (int64_t v = n - 1; v >= 0; --v) {
#pragma GCC unroll 8
    for (int k = 0; k < N; ++k) {
      r[k] = c[k][v] * r[k] + g[k][v];
      g[k][v] = r[k];
    }
  }
  for (int k = 0; k < N; ++k) carry[k] = r[k];
}

// Per-thread buffers of compute type for N chains. Storage types other than S keep the two
// live rows (current, previous) and a column block of coefficients here; S itself works in
// the output rows and reads coefficients in place.
template <class S, class T, int N> struct Workspace {
  static constexpr bool kDirect = std::is_same<S, T>::value;
  std::vector<S> buf;
  int64_t V;
  explicit Workspace(int64_t V_) : V(V_) {
    buf.resize(size_t(N) * (V + (kDirect ? 0 : 2 * V + kBlock)));
  }
  S* edge_row(int k) { return buf.data() + k * V; }  // h0_t of chain k in compute type
  S* rows(int k, int which) { return buf.data() + N * V + (2 * k + which) * V; }
  S* coef(int k) { return buf.data() + 3 * N * V + k * kBlock; }
};

// Coefficients of columns [v, v + n) of a row as compute type: in place, or converted.
template <class S, class T, int N>
KK_INLINE const S* coef_block(Workspace<S, T, N>& ws, int k, const T* src, int64_t n) {
  if constexpr (Workspace<S, T, N>::kDirect) {
    return src;
  } else {
    copy_row<S>(ws.coef(k), src, n);
    return ws.coef(k);
  }
}

template <class S, class T, int N>
void forward_items(const LinearScan2dForward& a, int64_t b0, Workspace<S, T, N>& ws) {
  constexpr bool kDirect = Workspace<S, T, N>::kDirect;
  const LinearScan2dArgs& s = a.s;
  const int64_t V = s.V;
  const S* prev[N];
  for (int k = 0; k < N; ++k) {
    prev[k] = nullptr;
    if (s.h0_t.data != nullptr) {
      for (int64_t v = 0; v < V; ++v) ws.edge_row(k)[v] = edge<S, T>(s.h0_t, b0 + k, v);
      prev[k] = ws.edge_row(k);
    }
  }
  for (int64_t t = 0; t < s.T; ++t) {
    S* cur[N];
    S carry[N];
    for (int k = 0; k < N; ++k) {
      if constexpr (kDirect) cur[k] = row<T>(a.h, b0 + k, t);
      else cur[k] = ws.rows(k, t & 1);
      carry[k] = s.h0_v.data != nullptr ? edge<S, T>(s.h0_v, b0 + k, t) : S(0);
    }
    for (int64_t v0 = 0; v0 < V; v0 += kBlock) {
      const int64_t n = std::min(kBlock, V - v0);
      S* h[N];
      const S* c[N];
      for (int k = 0; k < N; ++k) {
        h[k] = cur[k] + v0;
        const T* x = row<T>(a.x, b0 + k, t) + v0;
        if (prev[k] != nullptr) fma_row<S>(h[k], row<T>(s.a_t, b0 + k, t) + v0, prev[k] + v0, x, n);
        else copy_row<S>(h[k], x, n);
      }
      // Without h0_v the first column has no left term: its coefficient is not even read.
      const int64_t skip = (v0 == 0 && s.h0_v.data == nullptr) ? 1 : 0;
      for (int k = 0; k < N; ++k) {
        if (skip) carry[k] = h[k][0];
        h[k] += skip;
        c[k] = coef_block<S, T, N>(ws, k, row<T>(s.a_v, b0 + k, t) + v0 + skip, n - skip);
      }
      scan_up<N, S>(h, c, carry, n - skip);
      if constexpr (!kDirect)
        for (int k = 0; k < N; ++k) copy_row<S>(row<T>(a.h, b0 + k, t) + v0, cur[k] + v0, n);
    }
    for (int k = 0; k < N; ++k) prev[k] = cur[k];
  }
}

// da_t and da_v of row t from g (compute type), columns [v0, v0 + n).
template <class S, class T, int N>
void param_grads(const LinearScan2dBackward& a, int64_t b, int64_t t, const S* g, int64_t v0,
                 int64_t n, const S* h0_t_row) {
  const LinearScan2dArgs& s = a.s;
  if (a.da_t.data != nullptr) {
    T* dst = row<T>(a.da_t, b, t) + v0;
    if (t > 0) mul_row<S>(dst, g + v0, row<T>(a.h, b, t - 1) + v0, n);
    else if (h0_t_row != nullptr) mul_row<S>(dst, g + v0, h0_t_row + v0, n);
    else zero_row(dst, n);
  }
  if (a.da_v.data != nullptr) {
    T* dst = row<T>(a.da_v, b, t);
    int64_t v = v0;
    if (v == 0) {
      dst[0] = s.h0_v.data != nullptr ? StoreAs<T>::from(g[0] * edge<S, T>(s.h0_v, b, t))
                                      : StoreAs<T>::from(0.0f);
      ++v;
    }
    if (v < v0 + n) mul_row<S>(dst + v, g + v, row<T>(a.h, b, t) + v - 1, v0 + n - v);
  }
}

template <class S, class T, int N>
void backward_items(const LinearScan2dBackward& a, int64_t b0, Workspace<S, T, N>& ws) {
  constexpr bool kDirect = Workspace<S, T, N>::kDirect;
  const LinearScan2dArgs& s = a.s;
  const int64_t V = s.V;
  const S* h0_t_row[N];
  for (int k = 0; k < N; ++k) {
    h0_t_row[k] = nullptr;
    if (s.h0_t.data != nullptr && a.da_t.data != nullptr) {
      for (int64_t v = 0; v < V; ++v) ws.edge_row(k)[v] = edge<S, T>(s.h0_t, b0 + k, v);
      h0_t_row[k] = ws.edge_row(k);
    }
  }
  const S* next[N] = {};
  for (int64_t t = s.T - 1; t >= 0; --t) {
    S* cur[N];
    S carry[N] = {};  // set from the last column of the first block
    for (int k = 0; k < N; ++k) {
      if constexpr (kDirect) cur[k] = row<T>(a.dx, b0 + k, t);
      else cur[k] = ws.rows(k, t & 1);
    }
    // Blocks right to left; the column right of a block is carried in `carry`.
    for (int64_t v1 = V; v1 > 0; v1 -= kBlock) {
      const int64_t v0 = std::max<int64_t>(0, v1 - kBlock);
      const int64_t n = v1 - v0;
      S* g[N];
      const S* c[N];
      for (int k = 0; k < N; ++k) {
        g[k] = cur[k] + v0;
        const T* gr = row<T>(a.grad, b0 + k, t) + v0;
        if (t + 1 < s.T) fma_row<S>(g[k], row<T>(s.a_t, b0 + k, t + 1) + v0, next[k] + v0, gr, n);
        else copy_row<S>(g[k], gr, n);
      }
      // The last column has no right neighbour: its value is its b, no coefficient read.
      const int64_t skip = v1 == V ? 1 : 0;
      for (int k = 0; k < N; ++k) {
        if (skip) carry[k] = g[k][n - 1];
        // Column v's coefficient is a_v[t, v + 1].
        c[k] = coef_block<S, T, N>(ws, k, row<T>(s.a_v, b0 + k, t) + v0 + 1, n - skip);
      }
      scan_down<N, S>(g, c, carry, n - skip);
      for (int k = 0; k < N; ++k) {
        if constexpr (!kDirect) copy_row<S>(row<T>(a.dx, b0 + k, t) + v0, cur[k] + v0, n);
        param_grads<S, T, N>(a, b0 + k, t, cur[k], v0, n, h0_t_row[k]);
      }
    }
    for (int k = 0; k < N; ++k) next[k] = cur[k];
  }
}

// Runs body(b0, ws<N>) over the batch in groups of kChains items (fewer for the last group,
// or one item per group when there are too few items to give every thread kChains of them).
template <class S, class T, class Body>
void for_item_groups(const LinearScan2dArgs& s, Body body) {
  const int64_t work = s.batch * s.T * s.V;
  const int64_t max_threads = std::max<int64_t>(1, std::min<int64_t>(s.threads, work >> 14));
  const int64_t per = s.batch >= kChains * max_threads ? kChains : 1;
  const int64_t groups = (s.batch + per - 1) / per;
  const int threads = int(std::min<int64_t>(max_threads, groups));
  // The workspaces are per thread, allocated inside the region: a failure travels out through
  // errors (common/parallel.h), and every later item is skipped.
  ParallelErrors errors;
#pragma omp parallel num_threads(threads)
  {
    std::optional<Workspace<S, T, kChains>> wide;
    std::optional<Workspace<S, T, 1>> narrow;
    errors.run([&] {
      wide.emplace(per == kChains ? s.V : 0);
      narrow.emplace(s.V);
    });
#pragma omp for schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) errors.run([&] {
      const int64_t b0 = gi * per;
      int64_t left = std::min(per, s.batch - b0);
      if (left == kChains) {
        body(b0, *wide);
        return;
      }
      for (int64_t b = b0; b < b0 + left; ++b) body(b, *narrow);
    });
  }
  errors.rethrow();
}

template <class S, class T> void forward_typed(const LinearScan2dForward& a) {
  for_item_groups<S, T>(a.s, [&](int64_t b0, auto& ws) { forward_items(a, b0, ws); });
}

template <class S, class T> void backward_typed(const LinearScan2dBackward& a) {
  for_item_groups<S, T>(a.s, [&](int64_t b0, auto& ws) { backward_items(a, b0, ws); });
}

}  // namespace scan2d_detail

void linear_scan_2d_forward_run(const LinearScan2dForward& a) {
  using namespace scan2d_detail;
  switch (a.s.dtype) {
    case DType::f32: return forward_typed<float, float>(a);
    case DType::f64: return forward_typed<double, double>(a);
    case DType::f16: return forward_typed<float, f16_bits>(a);
    case DType::bf16: return forward_typed<float, bf16_bits>(a);
  }
}

void linear_scan_2d_backward_run(const LinearScan2dBackward& a) {
  using namespace scan2d_detail;
  switch (a.s.dtype) {
    case DType::f32: return backward_typed<float, float>(a);
    case DType::f64: return backward_typed<double, double>(a);
    case DType::f16: return backward_typed<float, f16_bits>(a);
    case DType::bf16: return backward_typed<float, bf16_bits>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
