// Delta-rule kernels, written once over the vectors of common/vec.h and compiled once per ISA.
// One thread owns a (batch, head): its state (16 KiB at 64 x 64 in float32) stays in L1 and each
// step reads and writes it once. The forward keeps S^T, vectorized along d_v: the rank-1 update
// of step t-1 is applied on the way in and S_{t-1} k_t, S_{t-1} q_t are summed along the
// vectors (the update needs S_{t-1} k_t, known only once every row is done). The backward
// stores no states: forward again for w_t = v_t - S_{t-1} k_t (unless the forward kept them);
// backward for G_t = dL/dS_t (S layout, 4 rows at a time, G_t k_t by horizontal sums); forward
// again for the products with S_{t-1} and S_t, which sum along the vectors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/aligned.h"
#include "common/memory.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "scan/delta_rule.h"

namespace kernelkit {
namespace KK_ISA {
namespace delta_rule_detail {

// State rows per block: 2 x 4 accumulators plus the operands fit the 16 vector registers.
constexpr int R = 4;

// Pairwise sums within 128-bit lanes, as vhaddps / vhaddpd order them.
KK_INLINE vf8 hadd(vf8 x, vf8 y) {
  return __builtin_shuffle(x, y, vi8{0, 2, 8, 10, 4, 6, 12, 14}) +
         __builtin_shuffle(x, y, vi8{1, 3, 9, 11, 5, 7, 13, 15});
}

KK_INLINE vd4 hadd(vd4 x, vd4 y) {
  return __builtin_shuffle(x, y, vl4{0, 4, 2, 6}) + __builtin_shuffle(x, y, vl4{1, 5, 3, 7});
}

// The lane sums of a[0..3] into out[0..3].
KK_INLINE void row_sums(const vf8* a, float* out) {
  const vf8 u = hadd(hadd(a[0], a[1]), hadd(a[2], a[3]));  // halves of the sums, 2 x 4 lanes
  const vf8 r = u + __builtin_shuffle(u, vi8{4, 5, 6, 7, 0, 1, 2, 3});
  std::memcpy(out, &r, 4 * sizeof(float));
}

KK_INLINE void row_sums(const vd4* a, double* out) {
  const vd4 t0 = hadd(a[0], a[1]), t1 = hadd(a[2], a[3]);
  const vd4 r =
      __builtin_shuffle(t0, t1, vl4{0, 1, 4, 5}) + __builtin_shuffle(t0, t1, vl4{2, 3, 6, 7});
  std::memcpy(out, &r, sizeof r);
}

template <class S> KK_INLINE VecT<S> vload(const S* p) { return load_as<S>(p); }

// The sizes a kernel works with: d_k padded to whole vectors, d_v to whole row blocks; the
// padding of every staged vector and of the state stays zero, so it contributes nothing.
// The forward keeps S^T instead (d_k rows of d_v padded to ldv, pairs of vectors).
struct Dims {
  int64_t steps, dk, dv, ldk, rows, ldv;
  template <class S> static Dims of(const DeltaRuleSizes& n) {
    constexpr int W = Vec<S>::W;
    return {n.steps, n.dk, n.dv, (n.dk + W - 1) / W * W, (n.dv + R - 1) / R * R,
            (n.dv + 2 * W - 1) / (2 * W) * (2 * W)};
  }
};

// One thread's scratch: the state and the per-step vectors, allocated before the threads start.
template <class S> struct Work {
  Dims d;
  AlignedVector<S> state, ka, kb, q, col1, col2;  // state: rows x ldk or dk x ldv; others: ldk
  AlignedVector<S> coef, rv, rv2, sum1, sum2, wt;  // ldv (>= rows) each
  AlignedVector<S> w;                              // steps x rows (backward, recomputing w)
  Work(const Dims& dims, bool recompute_w)
      : d(dims), state(std::max(dims.rows * dims.ldk, dims.dk * dims.ldv)), ka(dims.ldk),
        kb(dims.ldk), q(dims.ldk), col1(dims.ldk), col2(dims.ldk), coef(dims.ldv),
        rv(dims.ldv), rv2(dims.ldv), sum1(dims.ldv), sum2(dims.ldv), wt(dims.ldv),
        w(recompute_w ? dims.steps * dims.rows : 0) {}
};

// (b, h)'s slice of a (B, T, H, D) view, advanced by t steps with at(t).
template <class T> struct Seq {
  T* base;
  int64_t st;
  template <class View> Seq(const View& x, int64_t b, int64_t h)
      : base(static_cast<T*>(x.data) + b * x.sb + h * x.sh), st(x.st) {}
  T* at(int64_t t) const { return base + t * st; }
};

// a . b over n entries: whole vectors, then the rest one by one.
template <class S> S dot(const S* a, const S* b, int64_t n) {
  constexpr int W = Vec<S>::W;
  VecT<S> acc{};
  int64_t i = 0;
  for (; i + W <= n; i += W) acc = fmadd(vload(a + i), vload(b + i), acc);
  S r = 0;
  for (int j = 0; j < W; ++j) r += acc[j];
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

// dst = mul * src over n entries, converted to the compute type.
template <class S, class T> void stage(const T* src, int64_t n, S mul, S* dst) {
  constexpr int W = Vec<S>::W;
  const VecT<S> m = Vec<S>::broadcast(mul);
  int64_t i = 0;
  for (; i + W <= n; i += W) store_vec(dst + i, load_as<S>(src + i) * m);
  for (; i < n; ++i) dst[i] = to_compute<S>(src[i]) * mul;
}

// out = a + c * b over n entries, stored in out's type.
template <class S, class T> void store_axpy(const S* a, const S* b, S c, int64_t n, T* out) {
  constexpr int W = Vec<S>::W;
  const VecT<S> cv = Vec<S>::broadcast(c);
  int64_t i = 0;
  for (; i + W <= n; i += W) store_vec_checked(out + i, fmadd(cv, vload(b + i), vload(a + i)));
  for (; i < n; ++i) out[i] = StoreAs<T>::from(a[i] + c * b[i]);
}

// Steps of one head lie H rows apart in (B, T, H, D) tensors, too far for the hardware
// prefetchers (which stay within a 4 KiB page): fetch the rows kAhead steps on by hand.
constexpr int64_t kAhead = 4;

// state (S layout: rows x ldk) <- a (d_k, d_v) block, or zeros; and back.
template <class S> void load_state(S* state, const S* block, const Dims& d) {
  std::fill(state, state + d.rows * d.ldk, S(0));
  if (block == nullptr) return;
  for (int64_t j = 0; j < d.dk; ++j)
    for (int64_t i = 0; i < d.dv; ++i) state[i * d.ldk + j] = block[j * d.dv + i];
}

template <class S> void store_state(const S* state, S* block, const Dims& d) {
  for (int64_t j = 0; j < d.dk; ++j)
    for (int64_t i = 0; i < d.dv; ++i) block[j * d.dv + i] = state[i * d.ldk + j];
}

// rows += coef_i * kp^T: the pending rank-1 update, applied alone (after the last step).
template <class S> void apply_update(S* state, const S* coef, const S* kp, const Dims& d) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  for (int64_t i = 0; i < d.rows; ++i) {
    const V c = Vec<S>::broadcast(coef[i]);
    for (int64_t j = 0; j < d.ldk; j += W)
      store_vec(state + i * d.ldk + j, fmadd(c, vload(kp + j), vload(state + i * d.ldk + j)));
  }
}

// A block's R per-row coefficients, broadcast once into locals: the stores into the state
// cannot alias locals, so the compiler need not re-read them (nor keep their addresses).
template <class S> struct Coefs {
  VecT<S> v[R];
  KK_INLINE explicit Coefs(const S* c) {
    for (int r = 0; r < R; ++r) v[r] = Vec<S>::broadcast(c[r]);
  }
};

// S^T (d_k x ldv) <- a (d_k, d_v) block, or zeros; and back.
template <class S> void load_state_t(S* st, const S* block, const Dims& d) {
  std::fill(st, st + d.dk * d.ldv, S(0));
  if (block == nullptr) return;
  for (int64_t j = 0; j < d.dk; ++j)
    std::copy(block + j * d.dv, block + (j + 1) * d.dv, st + j * d.ldv);
}

template <class S> void store_state_t(const S* st, S* block, const Dims& d) {
  for (int64_t j = 0; j < d.dk; ++j)
    std::copy(st + j * d.ldv, st + j * d.ldv + d.dv, block + j * d.dv);
}

// Forward over NV vectors of state columns (entries of v) from v0, in S^T: every row j gets
// the pending update kp_j c^T, then u += kn_j row and (WITH_Q) uq += qn_j row. The sums over
// j run along the vectors: no horizontal sums. At NV = 4 a row's 12 FMAs outlast the FMA
// latency that each sum's chain waits on, and the broadcasts serve twice the columns.
template <class S, bool WITH_Q, int NV>
KK_INLINE void forward_cols(S* st, const Dims& d, int64_t v0, const S* kp, const S* kn,
                            const S* qn, const S* coef, S* u, S* uq) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  V c[NV], su[NV] = {}, sq[NV] = {};
  for (int i = 0; i < NV; ++i) c[i] = vload(coef + v0 + i * W);
  S* row = st + v0;
  const int64_t dk = d.dk, ldv = d.ldv;  // locals: the stores below could alias d
  for (int64_t j = 0; j < dk; ++j, row += ldv) {
    const V a = Vec<S>::broadcast(kp[j]), b = Vec<S>::broadcast(kn[j]);
    const V qj = Vec<S>::broadcast(WITH_Q ? qn[j] : S(0));
    for (int i = 0; i < NV; ++i) {
      const V s_ = fmadd(a, c[i], vload(row + i * W));
      store_vec(row + i * W, s_);
      su[i] = fmadd(b, s_, su[i]);
      if (WITH_Q) sq[i] = fmadd(qj, s_, sq[i]);
    }
  }
  for (int i = 0; i < NV; ++i) {
    store_vec(u + v0 + i * W, su[i]);
    if (WITH_Q) store_vec(uq + v0 + i * W, sq[i]);
  }
}

// forward_cols over all of S^T's columns: blocks of 4 vectors, then one of 2.
template <class S, bool WITH_Q>
void forward_all_cols(S* st, const Dims& d, const S* kp, const S* kn, const S* qn,
                      const S* coef, S* u, S* uq) {
  constexpr int W = Vec<S>::W;
  int64_t v0 = 0;
  for (; v0 + 4 * W <= d.ldv; v0 += 4 * W)
    forward_cols<S, WITH_Q, 4>(st, d, v0, kp, kn, qn, coef, u, uq);
  if (v0 < d.ldv) forward_cols<S, WITH_Q, 2>(st, d, v0, kp, kn, qn, coef, u, uq);
}

// Where the w_t rows of one (b, h) live: the forward's output, or the work buffer.
template <class S> struct WRows {
  S* base;
  int64_t step;  // elements between consecutive t
  int64_t len;   // entries kept per step (d_v, or rows in the work buffer)
  S* at(int64_t t) const { return base + t * step; }
};

struct ForwardInputs {
  DeltaRuleSizes n;
  SeqView q, k, v, beta;
  const void* h0;
  double scale;
};

// One (b, h) forward. o (when WITH_Q) gets the outputs; keep (when its base is set) the w_t.
template <class S, class T, bool WITH_Q>
void forward_head(const ForwardInputs& in, SeqOut o, S* last, int64_t b, int64_t h, Work<S>& wk,
                  WRows<S> keep) {
  const Dims& d = wk.d;
  const Seq<const T> q(in.q, b, h), k(in.k, b, h), v(in.v, b, h), beta(in.beta, b, h);
  const Seq<T> out(o, b, h);
  const int64_t head = (b * in.n.heads + h) * d.dk * d.dv;
  load_state_t(wk.state.data(), in.h0 ? static_cast<const S*>(in.h0) + head : nullptr, d);
  std::fill(wk.coef.begin(), wk.coef.end(), S(0));
  std::fill(wk.ka.begin(), wk.ka.end(), S(0));
  std::fill(wk.rv.begin(), wk.rv.end(), S(0));
  S* kp = wk.ka.data();
  S* kn = wk.kb.data();
  const S scale = S(in.scale);
  for (int64_t t = 0; t < d.steps; ++t) {
    if (t + kAhead < d.steps) {
      prefetch_span(k.at(t + kAhead), d.dk);
      if (WITH_Q) prefetch_span(q.at(t + kAhead), d.dk);
      prefetch_span(v.at(t + kAhead), d.dv);
    }
    stage(k.at(t), d.dk, S(1), kn);
    if (WITH_Q) stage(q.at(t), d.dk, scale, wk.q.data());
    stage(v.at(t), d.dv, S(1), wk.rv.data());
    const S bt = to_compute<S>(*beta.at(t));
    forward_all_cols<S, WITH_Q>(wk.state.data(), d, kp, kn, wk.q.data(), wk.coef.data(),
                                wk.sum1.data(), wk.sum2.data());
    S* w = wk.rv2.data();
    const VecT<S> btv = Vec<S>::broadcast(bt);
    for (int64_t i = 0; i < d.ldv; i += Vec<S>::W) {  // ldv: whole vectors
      const VecT<S> wv = vload(wk.rv.data() + i) - vload(wk.sum1.data() + i);
      store_vec(w + i, wv);
      store_vec(wk.coef.data() + i, btv * wv);
    }
    if (keep.base) std::copy(w, w + keep.len, keep.at(t));
    if (WITH_Q)
      store_axpy(wk.sum2.data(), wk.coef.data(), dot(kn, wk.q.data(), d.ldk), d.dv, out.at(t));
    std::swap(kp, kn);
  }
  if (last != nullptr) {
    for (int64_t j = 0; j < d.dk; ++j)  // the pending update of the last step
      for (int64_t i = 0; i < d.dv; ++i) wk.state[j * d.ldv + i] += kp[j] * wk.coef[i];
    store_state_t(wk.state.data(), last + head, d);
  }
}

// w_t padded with zeros to the rows of a block (the forward's rows hold only d_v entries).
template <class S> const S* stage_w(const WRows<S>& wr, int64_t t, Work<S>& wk) {
  std::copy(wr.at(t), wr.at(t) + wr.len, wk.wt.data());
  return wk.wt.data();
}

// Backward block of R rows of G (reverse pass): rows += p_r kp^T + do_r qs^T (now G_t);
// g_r = rows . kn; col += e_r rows (e_r = beta_t w_t,r: col gathers beta_t G_t^T w_t).
template <class S>
KK_INLINE void reverse_block(S* st, int64_t ldk, const S* kp, const S* p, const S* dout,
                             const S* qs, const S* kn, const S* e, S* col, S* g) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const Coefs<S> pr(p), dr(dout), er(e);
  V ag[R] = {};
  for (int64_t j = 0; j < ldk; j += W) {
    const V kpv = vload(kp + j), qv = vload(qs + j), knv = vload(kn + j);
    V acc = vload(col + j);
    for (int r = 0; r < R; ++r) {
      S* ptr = st + r * ldk + j;
      V s = fmadd(pr.v[r], kpv, vload(ptr));
      s = fmadd(dr.v[r], qv, s);
      store_vec(ptr, s);
      ag[r] = fmadd(s, knv, ag[r]);
      acc = fmadd(er.v[r], s, acc);
    }
    store_vec(col + j, acc);
  }
  row_sums(ag, g);
}

// Forward-again block of R rows of S: col1 += dv_r S_{t-1} rows; rows += c_r k^T (now S_t);
// col2 += do_r S_t rows.
template <class S>
KK_INLINE void gradient_block(S* st, int64_t ldk, const S* k, const S* c, const S* dv,
                              const S* dout, S* col1, S* col2) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const Coefs<S> vr(dv), cr(c), dr(dout);
  for (int64_t j = 0; j < ldk; j += W) {
    const V kv = vload(k + j);
    V a1 = vload(col1 + j), a2 = vload(col2 + j);
    for (int r = 0; r < R; ++r) {
      S* ptr = st + r * ldk + j;
      V s = vload(ptr);
      a1 = fmadd(vr.v[r], s, a1);
      s = fmadd(cr.v[r], kv, s);
      store_vec(ptr, s);
      a2 = fmadd(dr.v[r], s, a2);
    }
    store_vec(col1 + j, a1);
    store_vec(col2 + j, a2);
  }
}

// Reverse pass over one (b, h): dv, dbeta, dk (its beta_t G_t^T w_t part) and dh0.
template <class S, class T>
void reverse_head(const DeltaRuleBackwardArgs& a, int64_t b, int64_t h, Work<S>& wk,
                  WRows<S> wr) {
  const Dims& d = wk.d;
  const Seq<const T> q(a.q, b, h), k(a.k, b, h), beta(a.beta, b, h), dout(a.d_o, b, h);
  const Seq<S> dk(a.dk, b, h), dv(a.dv, b, h), dbeta(a.dbeta, b, h);
  const int64_t head = (b * a.n.heads + h) * d.dk * d.dv;
  load_state(wk.state.data(), a.d_last ? static_cast<const S*>(a.d_last) + head : nullptr, d);
  std::fill(wk.coef.begin(), wk.coef.end(), S(0));
  std::fill(wk.ka.begin(), wk.ka.end(), S(0));
  std::fill(wk.rv.begin(), wk.rv.end(), S(0));
  S* kp = wk.ka.data();
  S* kn = wk.kb.data();
  S* e = wk.rv2.data();
  const S scale = S(a.scale);
  for (int64_t t = d.steps - 1; t >= 0; --t) {
    if (t >= kAhead) {
      prefetch_span(k.at(t - kAhead), d.dk);
      prefetch_span(q.at(t - kAhead), d.dk);
      prefetch_span(dout.at(t - kAhead), d.dv);
    }
    stage(k.at(t), d.dk, S(1), kn);
    stage(q.at(t), d.dk, scale, wk.q.data());
    stage(dout.at(t), d.dv, S(1), wk.rv.data());
    const S bt = to_compute<S>(*beta.at(t));
    const S* w = stage_w(wr, t, wk);
    for (int64_t i = 0; i < d.rows; ++i) e[i] = bt * w[i];
    std::fill(wk.col1.begin(), wk.col1.end(), S(0));
    for (int64_t r0 = 0; r0 < d.rows; r0 += R)
      reverse_block<S>(wk.state.data() + r0 * d.ldk, d.ldk, kp, wk.coef.data() + r0,
                       wk.rv.data() + r0, wk.q.data(), kn, e + r0, wk.col1.data(),
                       wk.sum1.data() + r0);
    *dbeta.at(t) = dot(wk.sum1.data(), w, d.rows);
    S* dvt = dv.at(t);
    for (int64_t i = 0; i < d.rows; ++i) {
      const S g = wk.sum1[i];
      wk.coef[i] = -bt * g;  // G_t (I - beta_t k_t k_t^T) = G_t - beta_t (G_t k_t) k_t^T
      if (i < d.dv) dvt[i] = bt * g;
    }
    std::copy(wk.col1.begin(), wk.col1.begin() + d.dk, dk.at(t));
    std::swap(kp, kn);
  }
  if (a.dh0 != nullptr) {
    apply_update(wk.state.data(), wk.coef.data(), kp, d);
    store_state(wk.state.data(), static_cast<S*>(a.dh0) + head, d);
  }
}

// Forward-again pass over one (b, h): dk -= S_{t-1}^T dv_t and dq = scale S_t^T do_t.
template <class S, class T>
void gradient_head(const DeltaRuleBackwardArgs& a, int64_t b, int64_t h, Work<S>& wk,
                   WRows<S> wr) {
  const Dims& d = wk.d;
  const Seq<const T> k(a.k, b, h), beta(a.beta, b, h), dout(a.d_o, b, h);
  const Seq<S> dq(a.dq, b, h), dk(a.dk, b, h), dv(a.dv, b, h);
  const int64_t head = (b * a.n.heads + h) * d.dk * d.dv;
  load_state(wk.state.data(), a.h0 ? static_cast<const S*>(a.h0) + head : nullptr, d);
  std::fill(wk.rv.begin(), wk.rv.end(), S(0));
  std::fill(wk.rv2.begin(), wk.rv2.end(), S(0));
  const S scale = S(a.scale);
  for (int64_t t = 0; t < d.steps; ++t) {
    if (t + kAhead < d.steps) {
      prefetch_span(k.at(t + kAhead), d.dk);
      prefetch_span(dout.at(t + kAhead), d.dv);
      prefetch_span(dv.at(t + kAhead), d.dv);
    }
    stage(k.at(t), d.dk, S(1), wk.ka.data());
    stage(dout.at(t), d.dv, S(1), wk.rv.data());
    std::copy(dv.at(t), dv.at(t) + d.dv, wk.rv2.data());
    const S bt = to_compute<S>(*beta.at(t));
    const S* w = stage_w(wr, t, wk);
    for (int64_t i = 0; i < d.rows; ++i) wk.coef[i] = bt * w[i];
    std::fill(wk.col1.begin(), wk.col1.end(), S(0));
    std::fill(wk.col2.begin(), wk.col2.end(), S(0));
    for (int64_t r0 = 0; r0 < d.rows; r0 += R)
      gradient_block<S>(wk.state.data() + r0 * d.ldk, d.ldk, wk.ka.data(), wk.coef.data() + r0,
                        wk.rv2.data() + r0, wk.rv.data() + r0, wk.col1.data(), wk.col2.data());
    S* dkt = dk.at(t);
    S* dqt = dq.at(t);
    for (int64_t j = 0; j < d.dk; ++j) {
      dkt[j] -= wk.col1[j];
      dqt[j] = scale * wk.col2[j];
    }
  }
}

// Runs body(work, b, h) for every (b, h), the heads spread over the threads.
template <class S, class Body>
void for_each_head(const DeltaRuleSizes& n, int threads, bool recompute_w, Body body) {
  const int64_t heads = n.batch * n.heads;
  const int nt = int(std::max<int64_t>(1, std::min<int64_t>(threads, heads)));
  const Dims dims = Dims::of<S>(n);
  // Allocated here, not in the parallel region: a failed allocation then reaches the caller.
  std::vector<Work<S>> works;
  works.reserve(nt);
  for (int i = 0; i < nt; ++i) works.emplace_back(dims, recompute_w);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
  for (int64_t bh = 0; bh < heads; ++bh) {
#if defined(_OPENMP)
    Work<S>& wk = works[omp_get_thread_num()];
#else
    Work<S>& wk = works[0];
#endif
    body(wk, bh / n.heads, bh % n.heads);
  }
}

template <class S, class T> void forward_typed(const DeltaRuleForwardArgs& a) {
  const ForwardInputs in{a.n, a.q, a.k, a.v, a.beta, a.h0, a.scale};
  S* last = static_cast<S*>(a.last_state);
  for_each_head<S>(a.n, a.threads, false, [&](Work<S>& wk, int64_t b, int64_t h) {
    WRows<S> keep{nullptr, 0, 0};
    if (a.w.data != nullptr) {
      const Seq<S> w(a.w, b, h);
      keep = {w.base, w.st, wk.d.dv};
    }
    forward_head<S, T, true>(in, a.o, last, b, h, wk, keep);
  });
}

template <class S, class T> void backward_typed(const DeltaRuleBackwardArgs& a) {
  const ForwardInputs in{a.n, a.q, a.k, a.v, a.beta, a.h0, a.scale};
  const bool given = a.w.data != nullptr;
  for_each_head<S>(a.n, a.threads, !given, [&](Work<S>& wk, int64_t b, int64_t h) {
    WRows<S> wr{wk.w.data(), wk.d.rows, wk.d.rows};
    if (given) {
      const Seq<const S> w(a.w, b, h);
      wr = {const_cast<S*>(w.base), w.st, wk.d.dv};  // only read from here on
    } else {
      forward_head<S, T, false>(in, SeqOut{}, nullptr, b, h, wk, wr);
    }
    reverse_head<S, T>(a, b, h, wk, wr);
    gradient_head<S, T>(a, b, h, wk, wr);
  });
}

}  // namespace delta_rule_detail

void delta_rule_forward_run(const DeltaRuleForwardArgs& a) {
  using namespace delta_rule_detail;
  switch (a.dtype) {
    case DType::f32: return forward_typed<float, float>(a);
    case DType::f64: return forward_typed<double, double>(a);
    case DType::f16: return forward_typed<float, f16_bits>(a);
    case DType::bf16: return forward_typed<float, bf16_bits>(a);
  }
}

void delta_rule_backward_run(const DeltaRuleBackwardArgs& a) {
  using namespace delta_rule_detail;
  switch (a.dtype) {
    case DType::f32: return backward_typed<float, float>(a);
    case DType::f64: return backward_typed<double, double>(a);
    case DType::f16: return backward_typed<float, f16_bits>(a);
    case DType::bf16: return backward_typed<float, bf16_bits>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
