// Backward of the linear scan, one pass in the opposite order of the forward: reads a, grad and h
// once, writes dx and da once (g_t = grad_t + conj(a_{t+1}) g_{t+1}, dx_t = g_t,
// da_t = g_t conj(h_{t-1}), dh0 = conj(a_0) g_0). The forward kernels' three layouts: transposed
// time-contiguous chunks for g, then da along each row from the dx just written (still in
// cache) and h one step shifted; contiguous lane runs with the carried conj(a) g in L1; or a
// scalar loop per sequence.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/parallel.h"
#include "scan/linear_scan_impl.h"

namespace kernelkit {
namespace KK_ISA {
namespace linear_scan_detail {

template <class T> struct BackwardProblem {
  View<const T> a, grad, h;
  View<T> dx, da;
  const T* h0;
  int64_t h0_s0, h0_s1;
  T* dh0;
  int64_t dh0_s0, dh0_s1;
  int64_t n0, len, n1;
  bool reverse;  // the forward's direction
  int threads;
};

template <class T> BackwardProblem<T> make_backward_problem(const LinearScanBackwardArgs& args) {
  const int64_t e = args.is_complex ? 2 : 1;
  auto view = [e](auto* p, const ScanStrides& s) {
    return View<std::remove_pointer_t<decltype(p)>>{p, s.s0 * e, s.st * e, s.s1 * e};
  };
  return BackwardProblem<T>{
      view(static_cast<const T*>(args.a), args.a_strides),
      view(static_cast<const T*>(args.grad), args.grad_strides),
      view(static_cast<const T*>(args.h), args.h_strides),
      view(static_cast<T*>(args.dx), args.dx_strides),
      view(static_cast<T*>(args.da), args.da_strides),
      static_cast<const T*>(args.h0), args.h0_s0 * e, args.h0_s1 * e,
      static_cast<T*>(args.dh0), args.dh0_s0 * e, args.dh0_s1 * e,
      args.n0, args.len, args.n1, args.reverse, args.threads};
}

// conj(u) * v on (re, im) lanes.
template <class S> KK_INLINE VecT<S> conj_mul(VecT<S> u, VecT<S> v) {
  return PairLanes<S>::re(u) * v + PairLanes<S>::sign(S(-1)) * PairLanes<S>::im(u) *
                                        PairLanes<S>::swap(v);
}

// ---- scalar: any strides ------------------------------------------------------------------

template <class S, class T, bool CPLX>
void backward_sequence(const BackwardProblem<T>& p, int64_t i0, int64_t i1) {
  // Pointers at the forward's first step, steps in the forward's order; walked backwards.
  const int64_t dir = p.reverse ? -1 : 1;
  const T* a = seq_start(p.a, i0, i1, p.len, p.reverse);
  const T* g = seq_start(p.grad, i0, i1, p.len, p.reverse);
  const T* h = seq_start(p.h, i0, i1, p.len, p.reverse);
  T* dx = seq_start(p.dx, i0, i1, p.len, p.reverse);
  T* da = seq_start(p.da, i0, i1, p.len, p.reverse);
  const int64_t ast = dir * p.a.st, gst = dir * p.grad.st, hst = dir * p.h.st;
  const int64_t xst = dir * p.dx.st, dst = dir * p.da.st;
  const T* h0 = p.h0 ? p.h0 + i0 * p.h0_s0 + i1 * p.h0_s1 : nullptr;
  S cr = 0, ci = 0;  // conj(a_{t+1}) g_{t+1}
  for (int64_t q = p.len - 1; q >= 0; --q) {
    const T* hp = q > 0 ? h + (q - 1) * hst : h0;
    const S hr = hp ? to_compute<S>(hp[0]) : S(0);
    const S gr = to_compute<S>(g[q * gst]) + cr;
    dx[q * xst] = StoreAs<T>::from(gr);
    const S ar = to_compute<S>(a[q * ast]);
    if constexpr (CPLX) {
      const S hi = hp ? hp[1] : S(0), gi = g[q * gst + 1] + ci, ai = a[q * ast + 1];
      dx[q * xst + 1] = gi;
      da[q * dst] = gr * hr + gi * hi;
      da[q * dst + 1] = gi * hr - gr * hi;
      cr = ar * gr + ai * gi;
      ci = ar * gi - ai * gr;
    } else {
      da[q * dst] = StoreAs<T>::from(gr * hr);
      cr = ar * gr;
    }
  }
  T* out = p.dh0 + i0 * p.dh0_s0 + i1 * p.dh0_s1;
  out[0] = StoreAs<T>::from(cr);
  if constexpr (CPLX) out[1] = ci;
}

template <class S, class T, bool CPLX>
void backward_scalar(const BackwardProblem<T>& p) {
  const int64_t rows = p.n0 * p.n1;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads_for(p.threads, rows, rows * p.len)) \
    schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    errors.run([&] { backward_sequence<S, T, CPLX>(p, r / p.n1, r % p.n1); });
  errors.rethrow();
}

// ---- time strided, batch dim contiguous: runs of lanes, the carry in L1 ------------------

template <class S, class T, bool CPLX, bool A_BCAST>
void backward_lane_block(const BackwardProblem<T>& p, int64_t i0, int64_t c0, int64_t c1) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  constexpr int shift = CPLX ? 1 : 0;  // storage lane c is element c >> shift, part c & 1
  alignas(64) S carry[kLaneBlock<S>];
  alignas(64) S h0[kLaneBlock<S>];
  const int64_t n = c1 - c0, nv = n / W * W;
  for (int64_t c = 0; c < n; ++c) {
    const int64_t lane = c0 + c;
    carry[c] = S(0);
    h0[c] = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + (lane >> shift) * p.h0_s1 + (lane & shift)])
                 : S(0);
  }
  const int64_t dir = p.reverse ? -1 : 1;
  const int64_t ast = dir * p.a.st, gst = dir * p.grad.st, hst = dir * p.h.st;
  const int64_t xst = dir * p.dx.st, dst = dir * p.da.st;
  const T* a = seq_start(p.a, i0, 0, p.len, p.reverse) + (A_BCAST ? 0 : c0);
  const T* g = seq_start(p.grad, i0, 0, p.len, p.reverse) + c0;
  const T* h = seq_start(p.h, i0, 0, p.len, p.reverse) + c0;
  T* dx = seq_start(p.dx, i0, 0, p.len, p.reverse) + c0;
  T* da = seq_start(p.da, i0, 0, p.len, p.reverse) + c0;
  for (int64_t q = p.len - 1; q >= 0; --q) {
    const T* aq = a + q * ast;
    const T* gq = g + q * gst;
    const T* hq = q > 0 ? h + (q - 1) * hst : nullptr;
    T* xq = dx + q * xst;
    T* dq = da + q * dst;
    const S a_one = A_BCAST ? to_compute<S>(*aq) : S(0);
    for (int64_t c = 0; c < nv; c += W) {
      const V gv = load_as<S>(gq + c) + load_as<S>(carry + c);
      const V hp = hq ? load_as<S>(hq + c) : load_as<S>(h0 + c);
      store_vec(xq + c, gv);
      if constexpr (CPLX) {
        store_vec(dq + c, conj_mul<S>(hp, gv));
        store_vec(carry + c, conj_mul<S>(load_as<S>(aq + c), gv));
      } else {
        store_vec(dq + c, gv * hp);
        const V av = A_BCAST ? Vec<S>::broadcast(a_one) : load_as<S>(aq + c);
        store_vec(carry + c, av * gv);
      }
    }
    for (int64_t c = nv; c < n; c += int64_t(1) << shift) {
      const S gr = to_compute<S>(gq[c]) + carry[c];
      const S hr = hq ? to_compute<S>(hq[c]) : h0[c];
      xq[c] = StoreAs<T>::from(gr);
      if constexpr (CPLX) {
        const S gi = gq[c + 1] + carry[c + 1], hi = hq ? hq[c + 1] : h0[c + 1];
        const S ar = aq[c], ai = aq[c + 1];
        xq[c + 1] = gi;
        dq[c] = gr * hr + gi * hi;
        dq[c + 1] = gi * hr - gr * hi;
        carry[c] = ar * gr + ai * gi;
        carry[c + 1] = ar * gi - ai * gr;
      } else {
        dq[c] = StoreAs<T>::from(gr * hr);
        carry[c] = (A_BCAST ? a_one : to_compute<S>(aq[c])) * gr;
      }
    }
  }
  for (int64_t c = 0; c < n; ++c) {
    const int64_t lane = c0 + c;
    p.dh0[i0 * p.dh0_s0 + (lane >> shift) * p.dh0_s1 + (lane & shift)] =
        StoreAs<T>::from(carry[c]);
  }
}

template <class S, class T, bool CPLX, bool A_BCAST>
void backward_inner_contiguous(const BackwardProblem<T>& p) {
  constexpr int64_t W = Vec<S>::W;
  const int64_t width = p.n1 << (CPLX ? 1 : 0);
  const int64_t per_thread = (p.threads + p.n0 - 1) / p.n0;
  const int64_t piece =
      std::min(kLaneBlock<S>, ((width + per_thread - 1) / per_thread + W - 1) / W * W);
  const int64_t pieces = (width + piece - 1) / piece;
  const int64_t items = p.n0 * pieces;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads_for(p.threads, items, p.n0 * p.n1 * p.len)) \
    schedule(static)
  for (int64_t item = 0; item < items; ++item) errors.run([&] {
    const int64_t i0 = item / pieces, c0 = (item % pieces) * piece;
    backward_lane_block<S, T, CPLX, A_BCAST>(p, i0, c0, std::min(width, c0 + piece));
  });
  errors.rethrow();
}

// ---- time contiguous: the forward's transposed chunks for g, da along the rows --------------

// Down one chunk in the backward's order; sg (grad) becomes g (= dx).
template <class S, class C, int L, bool CPLX>
KK_INLINE void backward_chunk(const C* sa, C* sg, int64_t c, bool descending, VecT<S>* carry) {
  using V = VecT<S>;
  constexpr int WC = Vec<C>::W;  // elements per vector
  for (int64_t k = 0; k < c; ++k) {
    const int64_t j = descending ? c - 1 - k : k;
#pragma GCC unroll 4
    for (int v = 0; v < L / WC; ++v) {
      const int64_t o = j * L + v * WC;
      S* gp = reinterpret_cast<S*>(sg + o);
      const V av = load_as<S>(reinterpret_cast<const S*>(sa + o));
      const V gv = load_as<S>(gp) + carry[v];
      store_vec(gp, gv);
      if constexpr (CPLX) {
        carry[v] = conj_mul<S>(av, gv);
      } else {
        carry[v] = av * gv;
      }
    }
  }
}

// da[t] = dx[t] conj(h[t + shift]) for steps [m0, m0 + c) of one row, straight along it (no
// transposes; dx was just written, so it is read from cache); the forward's first step, whose
// h_prev lies outside the row, takes h0 (E values).
template <class S, class T, bool CPLX>
KK_INLINE void da_run(T* da, const T* dx, const T* h, int64_t m0, int64_t c, int64_t shift,
                      int64_t len, const S* h0) {
  constexpr int64_t E = CPLX ? 2 : 1;
  constexpr int64_t W = Vec<S>::W;  // storage units per vector
  auto one = [&](int64_t t, const S* hp) {  // hp: E values of h_prev
    const S gr = to_compute<S>(dx[t * E]);
    if constexpr (CPLX) {
      const S gi = dx[t * E + 1];
      da[t * E] = gr * hp[0] + gi * hp[1];
      da[t * E + 1] = gi * hp[0] - gr * hp[1];
    } else {
      da[t] = StoreAs<T>::from(gr * hp[0]);
    }
  };
  int64_t t0 = m0, t1 = m0 + c;
  const int64_t edge = shift < 0 ? 0 : len - 1;
  if (edge == t0) one(t0++, h0);
  if (edge == t1 - 1 && t1 > t0) one(--t1, h0);
  int64_t u = t0 * E;
  for (; u + W <= t1 * E; u += W) {
    const VecT<S> g = load_as<S>(dx + u), hv = load_as<S>(h + u + shift * E);
    if constexpr (CPLX) {
      store_vec(da + u, conj_mul<S>(hv, g));
    } else {
      store_vec(da + u, g * hv);
    }
  }
  for (; u < t1 * E; u += E) {
    S hp[E];
    for (int64_t e = 0; e < E; ++e) hp[e] = to_compute<S>(h[u + shift * E + e]);
    one(u / E, hp);
  }
}

template <class S, class T, bool CPLX>
void backward_time_contiguous(const BackwardProblem<T>& p) {
  using U = std::conditional_t<CPLX, double, T>;  // storage of one element
  using C = std::conditional_t<CPLX, double, S>;  // scratch of one element
  constexpr int E = CPLX ? 2 : 1;
  constexpr int L = kGroup * Vec<C>::W;
  const int64_t rows = p.n0 * p.n1;
  const int64_t groups = (rows + L - 1) / L;
  const int64_t chunks = (p.len + kChunk - 1) / kChunk;
  const int64_t a_st = p.a.st / E;
  // The backward walks memory time downwards when the forward went upwards, and h_prev is the
  // step before in the forward's order: h[t - 1], or h[t + 1] for a reverse forward.
  const bool descending = !p.reverse;
  const int64_t shift = p.reverse ? 1 : -1;
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads_for(p.threads, groups, rows * p.len)) \
    schedule(static)
  for (int64_t grp = 0; grp < groups; ++grp) errors.run([&] {
    alignas(64) C sa[kChunk * L];
    alignas(64) C sg[kChunk * L];
    alignas(64) S h0[L * E] = {};
    const U *ra[L], *rg[L];
    U* rx[L];
    const T* rh[L];
    T* rd[L];
    const int live = int(std::min<int64_t>(L, rows - grp * L));  // lanes that are not repeats
    for (int l = 0; l < L; ++l) {
      const int64_t r = l < live ? grp * L + l : grp * L;
      const int64_t i0 = r / p.n1, i1 = r % p.n1;
      ra[l] = reinterpret_cast<const U*>(p.a.at(i0, i1));
      rg[l] = reinterpret_cast<const U*>(p.grad.at(i0, i1));
      rx[l] = reinterpret_cast<U*>(p.dx.at(i0, i1));
      rh[l] = p.h.at(i0, i1);
      rd[l] = p.da.at(i0, i1);
      if (p.h0)
        for (int e = 0; e < E; ++e)
          h0[l * E + e] = to_compute<S>(p.h0[i0 * p.h0_s0 + i1 * p.h0_s1 + e]);
    }
    VecT<S> carry[L / Vec<C>::W] = {};
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t c = std::min<int64_t>(kChunk, p.len - k * kChunk);
      const int64_t m0 = descending ? p.len - k * kChunk - c : k * kChunk;
      const int64_t after = descending ? m0 - kChunk : m0 + kChunk;
      const int64_t next = k + 1 < chunks ? std::max<int64_t>(after, 0) : -1;
      gather<C, L>(ra, a_st, m0, c, sa, a_st == 0 ? -1 : next);
      gather<C, L>(rg, 1, m0, c, sg, next);
      backward_chunk<S, C, L, CPLX>(sa, sg, c, descending, carry);
      scatter<C, L>(sg, rx, m0, c, next);
      for (int l = 0; l < live; ++l) {
        prefetch_rows<1, kChunk * E>(rh + l, next < 0 ? -1 : std::max<int64_t>(next + shift, 0) * E,
                                     false);
        prefetch_rows<1, kChunk * E>(rd + l, next < 0 ? -1 : next * E, true);
        da_run<S, T, CPLX>(rd[l], reinterpret_cast<const T*>(rx[l]), rh[l], m0, c, shift,
                           p.len, h0 + l * E);
      }
    }
    alignas(64) S out[L * E];
    for (int v = 0; v < L / Vec<C>::W; ++v) store_vec(out + v * Vec<S>::W, carry[v]);
    for (int l = 0; l < live; ++l) {
      const int64_t r = grp * L + l, i0 = r / p.n1, i1 = r % p.n1;
      for (int e = 0; e < E; ++e)
        p.dh0[i0 * p.dh0_s0 + i1 * p.dh0_s1 + e] = StoreAs<T>::from(out[l * E + e]);
    }
  });
  errors.rethrow();
}

// ---- dispatch on layout ---------------------------------------------------------------------

template <class S, class T, bool CPLX>
void run_backward(const LinearScanBackwardArgs& args) {
  const BackwardProblem<T> p = make_backward_problem<T>(args);
  constexpr int64_t e = CPLX ? 2 : 1;
  constexpr bool kTransposes = !CPLX || std::is_same<S, float>::value;  // not complex128
  const bool time_unit = p.grad.st == e && p.h.st == e && p.dx.st == e && p.da.st == e;
  const bool lanes_unit = p.grad.s1 == e && p.h.s1 == e && p.dx.s1 == e && p.da.s1 == e;
  if (kTransposes && time_unit && (p.a.st == e || p.a.st == 0))
    return backward_time_contiguous<S, T, CPLX && kTransposes>(p);
  if (lanes_unit && p.n1 * e >= Vec<S>::W) {
    if (p.a.s1 == e) return backward_inner_contiguous<S, T, CPLX, false>(p);
    if (!CPLX && p.a.s1 == 0) return backward_inner_contiguous<S, T, CPLX, true>(p);
  }
  backward_scalar<S, T, CPLX>(p);
}

}  // namespace linear_scan_detail

void linear_scan_backward_run(const LinearScanBackwardArgs& a) {
  using namespace linear_scan_detail;
  if (a.is_complex) {
    if (a.dtype == DType::f64) return run_backward<double, double, true>(a);
    return run_backward<float, float, true>(a);
  }
  switch (a.dtype) {
    case DType::f32: return run_backward<float, float, false>(a);
    case DType::f64: return run_backward<double, double, false>(a);
    case DType::f16: return run_backward<float, f16_bits, false>(a);
    case DType::bf16: return run_backward<float, bf16_bits, false>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
