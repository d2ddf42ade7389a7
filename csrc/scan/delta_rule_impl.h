// Delta-rule kernels, written once over the vectors of common/vec.h and compiled once per ISA.
// One thread owns a (batch, head): its state (16 KiB at 64 x 64 in float32) stays in L1 and each
// step reads and writes it once, in column blocks of 4 vectors that run over all rows, so the
// sums over the rows stay in registers and every row's broadcasts serve 4 vectors.
// The forward keeps S^T, vectorized along d_v: the rank-1 update of step t-1 is applied on the
// way in and S_{t-1} k_t, S_{t-1} q_t are summed along the vectors (the update needs S_{t-1} k_t,
// known only once every row is done). The backward stores no states:
// - forward again for w_t = v_t - S_{t-1} k_t (unless the forward kept them);
// - backward for G_t = dL/dS_t, kept as G^T like the forward's state: G_t k_t sums along the
//   vectors; G_t^T w_t leaves one vector per row, whose lane sums come W rows at a time;
// - forward again in S's layout for dk's S_{t-1}^T dv_t and dq's S_t^T do_t, taken as
//   S_{t-1}^T do_t + (beta_t w_t . do_t) k_t: both products then use S_{t-1}, the update of
//   step t can wait for step t + 1 as in the forward, and the forward's column kernel serves.
// The backward's reverse pass hands the gradient pass all it needs per step (k_t, do_t,
// beta_t w_t, dv_t and dk_t's first part) in a contiguous per-thread buffer of about
// T (2 d_k + 3 d_v) entries, not through rows H apart in the inputs and outputs: those then go
// to or from memory once each, and the buffer, read back in the order opposite to its
// writing, is partly still in L2 (1.25 MiB per thread at T 1024, 64 x 64, float32).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/aligned.h"
#include "common/memory.h"
#include "common/parallel.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "scan/delta_rule.h"

namespace kernelkit {
namespace KK_ISA {
namespace delta_rule_detail {

template <class S> KK_INLINE VecT<S> vload(const S* p) { return load_as<S>(p); }

// The lane sums of the W vectors at p, as one vector (lane r: the sum of vector r).
template <class S> KK_INLINE VecT<S> lane_sums(const S* p) {
  constexpr int W = Vec<S>::W;
  VecT<S> a[W];
  for (int r = 0; r < W; ++r) a[r] = vload(p + W * r);
  return sum_lanes_transposed(a);
}

// The sizes a kernel works with: d_k and d_v padded to whole pairs of vectors (the narrowest
// column block). S^T is d_k rows of ldv, S d_v rows of ldk. The padding of every staged vector
// and of the state stays zero, so it contributes nothing.
struct Dims {
  int64_t steps, dk, dv, ldk, ldv;
  template <class S> static Dims of(const DeltaRuleSizes& n) {
    constexpr int W2 = 2 * Vec<S>::W;
    return {n.steps, n.dk, n.dv, (n.dk + W2 - 1) / W2 * W2, (n.dv + W2 - 1) / W2 * W2};
  }
};

// One step's vectors in Work::carry, from the reverse pass to the gradient pass: k_t and
// G_t^T e_t (ldk each), then do_t, c_t = beta_t w_t and dv_t (ldv each), their padding zero.
struct Carry {
  static int64_t size(const Dims& d) { return 2 * d.ldk + 3 * d.ldv; }
  static int64_t k(const Dims&) { return 0; }
  static int64_t gte(const Dims& d) { return d.ldk; }
  static int64_t dout(const Dims& d) { return 2 * d.ldk; }
  static int64_t c(const Dims& d) { return 2 * d.ldk + d.ldv; }
  static int64_t dv(const Dims& d) { return 2 * d.ldk + 2 * d.ldv; }
};

// One thread's scratch: the state and the per-step vectors, allocated before the threads start.
template <class S> struct Work {
  Dims d;
  AlignedVector<S> state;                     // S^T (dk x ldv) or S (dv x ldk)
  AlignedVector<S> ka, kb, q, col1, col2;     // ldk each
  AlignedVector<S> coef, rv, rv2, sum1, sum2;  // ldv each
  AlignedVector<S> part;                      // ldk x W: the reverse's row vectors
  AlignedVector<S> carry;                     // steps x Carry::size (backward)
  AlignedVector<S> w;                         // steps x dv (backward, recomputing w)
  Work(const Dims& dims, bool backward, bool recompute_w)
      : d(dims), state(std::max(dims.dk * dims.ldv, dims.dv * dims.ldk)), ka(dims.ldk),
        kb(dims.ldk), q(dims.ldk), col1(dims.ldk), col2(dims.ldk), coef(dims.ldv),
        rv(dims.ldv), rv2(dims.ldv), sum1(dims.ldv), sum2(dims.ldv),
        part(dims.ldk * Vec<S>::W), carry(backward ? dims.steps * Carry::size(dims) : 0),
        w(recompute_w ? dims.steps * dims.dv : 0) {}
  // Every pass over a head starts from zeros: what it stages then leaves the padding zero.
  void clear() {
    for (AlignedVector<S>* x : {&ka, &kb, &q, &col1, &col2, &coef, &rv, &rv2, &sum1, &sum2, &part})
      std::fill(x->begin(), x->end(), S(0));
  }
};

// (b, h)'s slice of a (B, T, H, D) view (or of a work buffer), advanced by t steps with at(t).
template <class T> struct Seq {
  T* base;
  int64_t st;
  Seq(T* base_, int64_t st_) : base(base_), st(st_) {}
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

// out[i..i+W) = f(out[i..i+W), i) over n entries of a gradient row. The last, partial vector
// goes through a zero-padded copy, so f may read its other (padded) operands as whole vectors.
template <class S, class F> KK_INLINE void update_row(S* out, int64_t n, F f) {
  constexpr int W = Vec<S>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) store_vec(out + i, f(vload(out + i), i));
  if (i < n) {
    alignas(kCacheLine) S tail[W] = {};
    std::copy(out + i, out + n, tail);
    store_vec(tail, f(vload(tail), i));
    std::copy(tail, tail + (n - i), out + i);
  }
}

// Steps of one head lie H rows apart in (B, T, H, D) tensors, too far for the hardware
// prefetchers (which stay within a 4 KiB page): fetch the rows kAhead steps on by hand. The
// forward's steps are shorter, and a prefetch further ahead stalls on a full line-fill queue
// (measured, one thread, 64 x 64: forward 2 / 4 steps ahead 224 / 251 ns per step; the
// backward's 4 beats 2 by 10%).
constexpr int64_t kAhead = 4;
constexpr int64_t kAheadForward = 2;

// S (d_v rows of ldk) <- a (d_k, d_v) block, or zeros.
template <class S> void load_state(S* state, const S* block, const Dims& d) {
  std::fill(state, state + d.dv * d.ldk, S(0));
  if (block == nullptr) return;
  for (int64_t j = 0; j < d.dk; ++j)
    for (int64_t i = 0; i < d.dv; ++i) state[i * d.ldk + j] = block[j * d.dv + i];
}

// S^T (d_k rows of ldv) <- a (d_k, d_v) block, or zeros; and back.
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

// Rows of S^T += a_j c: the pending rank-1 update, applied alone (after the last step).
template <class S> void apply_update_t(S* st, const S* a, const S* c, const Dims& d) {
  constexpr int W = Vec<S>::W;
  for (int64_t j = 0; j < d.dk; ++j) {
    const VecT<S> aj = Vec<S>::broadcast(a[j]);
    for (int64_t i = 0; i < d.ldv; i += W)
      store_vec(st + j * d.ldv + i, fmadd(aj, vload(c + i), vload(st + j * d.ldv + i)));
  }
}

// body(v0, NV) over the column blocks of rows of ld entries (whole pairs of vectors): blocks
// of 4 vectors, then one of 2 (NV an std::integral_constant).
template <class S, class Body> KK_INLINE void for_col_blocks(int64_t ld, Body body) {
  constexpr int W = Vec<S>::W;
  int64_t v0 = 0;
  for (; v0 + 4 * W <= ld; v0 += 4 * W) body(v0, std::integral_constant<int, 4>{});
  if (v0 < ld) body(v0, std::integral_constant<int, 2>{});
}

// Forward over NV vectors of a state's columns from v0 (rows of ld entries): every row r gets
// the pending update a_r c, then u += b_r row and (WITH_Q) uq += q_r row. The sums over the
// rows run along the vectors: no horizontal sums. At NV = 4 a row's 12 FMAs outlast the FMA
// latency that each sum's chain waits on, and the broadcasts serve twice the columns.
template <class S, bool WITH_Q, int NV>
KK_INLINE void forward_cols(S* st, int64_t rows, int64_t ld, int64_t v0, const S* a,
                            const S* c, const S* b, const S* q, S* u, S* uq) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  V cv[NV], su[NV] = {}, sq[NV] = {};
  for (int i = 0; i < NV; ++i) cv[i] = vload(c + v0 + i * W);
  S* row = st + v0;
  for (int64_t r = 0; r < rows; ++r, row += ld) {
    const V ar = Vec<S>::broadcast(a[r]), br = Vec<S>::broadcast(b[r]);
    const V qr = Vec<S>::broadcast(WITH_Q ? q[r] : S(0));
    for (int i = 0; i < NV; ++i) {
      const V s_ = fmadd(ar, cv[i], vload(row + i * W));
      store_vec(row + i * W, s_);
      su[i] = fmadd(br, s_, su[i]);
      if (WITH_Q) sq[i] = fmadd(qr, s_, sq[i]);
    }
  }
  for (int i = 0; i < NV; ++i) {
    store_vec(u + v0 + i * W, su[i]);
    if (WITH_Q) store_vec(uq + v0 + i * W, sq[i]);
  }
}

template <class S, bool WITH_Q>
void forward_all_cols(S* st, int64_t rows, int64_t ld, const S* a, const S* c, const S* b,
                      const S* q, S* u, S* uq) {
  for_col_blocks<S>(ld, [&](int64_t v0, auto nv) {
    forward_cols<S, WITH_Q, decltype(nv)::value>(st, rows, ld, v0, a, c, b, q, u, uq);
  });
}

// Backward over NV vectors of G^T's columns (entries of d_v) from v0: every row j (an entry
// of d_k) gets row += kp_j p + qs_j dout, which makes G_t of G_{t+1} (p = -beta_{t+1} G_{t+1}
// k_{t+1}, kp = k_{t+1}, qs = scale q_t); then g += kn_j row (G_t k_t, along the vectors) and
// part_j += e * row (e = beta_t w_t): the lane sums of part_j are (G_t^T e)_j. The first
// block starts part_j. At NV = 4 a row's 16 FMAs outlast the chains of g.
template <class S, int NV>
KK_INLINE void reverse_cols(S* st, int64_t rows, int64_t ld, int64_t v0, const S* kp,
                            const S* qs, const S* kn, const S* p, const S* dout, const S* e,
                            S* g, S* part) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  V pv[NV], dv[NV], ev[NV], ag[NV] = {};
  for (int i = 0; i < NV; ++i) {
    pv[i] = vload(p + v0 + i * W);
    dv[i] = vload(dout + v0 + i * W);
    ev[i] = vload(e + v0 + i * W);
  }
  const bool first = v0 == 0;
  S* row = st + v0;
  for (int64_t j = 0; j < rows; ++j, row += ld) {
    const V a = Vec<S>::broadcast(kp[j]), b = Vec<S>::broadcast(qs[j]);
    const V c = Vec<S>::broadcast(kn[j]);
    V sum = first ? V{} : vload(part + j * W);
    for (int i = 0; i < NV; ++i) {
      V s_ = fmadd(a, pv[i], vload(row + i * W));
      s_ = fmadd(b, dv[i], s_);
      store_vec(row + i * W, s_);
      ag[i] = fmadd(c, s_, ag[i]);
      sum = fmadd(ev[i], s_, sum);
    }
    store_vec(part + j * W, sum);
  }
  for (int i = 0; i < NV; ++i) store_vec(g + v0 + i * W, ag[i]);
}

struct ForwardInputs {
  DeltaRuleSizes n;
  SeqView q, k, v, beta;
  const void* h0;
  double scale;
};

// One (b, h) forward. o (when WITH_Q) gets the outputs; keep (when its base is set) the w_t.
template <class S, class T, bool WITH_Q>
void forward_head(const ForwardInputs& in, SeqOut o, S* last, int64_t b, int64_t h, Work<S>& wk,
                  Seq<S> keep) {
  using V = VecT<S>;
  const Dims& d = wk.d;
  const Seq<const T> q(in.q, b, h), k(in.k, b, h), v(in.v, b, h), beta(in.beta, b, h);
  const Seq<T> out(o, b, h);
  const int64_t head = (b * in.n.heads + h) * d.dk * d.dv;
  wk.clear();
  load_state_t(wk.state.data(), in.h0 ? static_cast<const S*>(in.h0) + head : nullptr, d);
  S* kp = wk.ka.data();
  S* kn = wk.kb.data();
  const S scale = S(in.scale);
  for (int64_t t = 0; t < d.steps; ++t) {
    if (t + kAheadForward < d.steps) {
      prefetch_span(k.at(t + kAheadForward), d.dk);
      if (WITH_Q) prefetch_span(q.at(t + kAheadForward), d.dk);
      prefetch_span(v.at(t + kAheadForward), d.dv);
      prefetch_span(beta.at(t + kAheadForward), 1);
      if (WITH_Q) prefetch_span(out.at(t + kAheadForward), d.dv);
      if (keep.base) prefetch_span(keep.at(t + kAheadForward), d.dv);
    }
    stage(k.at(t), d.dk, S(1), kn);
    if (WITH_Q) stage(q.at(t), d.dk, scale, wk.q.data());
    stage(v.at(t), d.dv, S(1), wk.rv.data());
    const S bt = to_compute<S>(*beta.at(t));
    forward_all_cols<S, WITH_Q>(wk.state.data(), d.dk, d.ldv, kp, wk.coef.data(), kn,
                                wk.q.data(), wk.sum1.data(), wk.sum2.data());
    S* w = wk.rv2.data();
    const V btv = Vec<S>::broadcast(bt);
    for (int64_t i = 0; i < d.ldv; i += Vec<S>::W) {  // ldv: whole vectors
      const V wv = vload(wk.rv.data() + i) - vload(wk.sum1.data() + i);
      store_vec(w + i, wv);
      store_vec(wk.coef.data() + i, btv * wv);
    }
    if (keep.base) std::copy(w, w + d.dv, keep.at(t));
    if (WITH_Q)
      store_axpy(wk.sum2.data(), wk.coef.data(), dot(kn, wk.q.data(), d.ldk), d.dv, out.at(t));
    std::swap(kp, kn);
  }
  if (last != nullptr) {
    apply_update_t(wk.state.data(), kp, wk.coef.data(), d);  // the last step's
    store_state_t(wk.state.data(), last + head, d);
  }
}

// Reverse pass over one (b, h): dbeta and dh0, and wk.carry (with dv and beta_t G_t^T w_t,
// dk's first part).
template <class S, class T>
void reverse_head(const DeltaRuleBackwardArgs& a, int64_t b, int64_t h, Work<S>& wk,
                  Seq<const S> w) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const Dims& d = wk.d;
  const Seq<const T> q(a.q, b, h), k(a.k, b, h), beta(a.beta, b, h), dout(a.d_o, b, h);
  const Seq<S> dbeta(a.dbeta, b, h);
  const int64_t head = (b * a.n.heads + h) * d.dk * d.dv;
  wk.clear();
  load_state_t(wk.state.data(), a.d_last ? static_cast<const S*>(a.d_last) + head : nullptr, d);
  const S* kp = wk.ka.data();  // k_{t+1}: zeros at first
  S* p = wk.coef.data();
  S* g = wk.sum1.data();
  const S* part = wk.part.data();
  const S scale = S(a.scale);
  for (int64_t t = d.steps - 1; t >= 0; --t) {
    S* carry = wk.carry.data() + t * Carry::size(d);
    S* kn = carry + Carry::k(d);
    S* dos = carry + Carry::dout(d);
    S* e = carry + Carry::c(d);
    if (t >= kAhead) {
      prefetch_span(k.at(t - kAhead), d.dk);
      prefetch_span(q.at(t - kAhead), d.dk);
      prefetch_span(dout.at(t - kAhead), d.dv);
      prefetch_span(w.at(t - kAhead), d.dv);
      prefetch_span(beta.at(t - kAhead), 1);
      prefetch_span(dbeta.at(t - kAhead), 1);
    }
    stage(k.at(t), d.dk, S(1), kn);
    stage(q.at(t), d.dk, scale, wk.q.data());
    stage(dout.at(t), d.dv, S(1), dos);
    const S bt = to_compute<S>(*beta.at(t));
    stage(w.at(t), d.dv, bt, e);
    for_col_blocks<S>(d.ldv, [&](int64_t v0, auto nv) {
      reverse_cols<S, decltype(nv)::value>(wk.state.data(), d.dk, d.ldv, v0, kp,
                                           wk.q.data(), kn, p, dos, e, g, wk.part.data());
    });
    *dbeta.at(t) = dot(g, w.at(t), d.dv);
    const V btv = Vec<S>::broadcast(bt);
    for (int64_t i = 0; i < d.ldv; i += W) {
      // G_t (I - beta_t k_t k_t^T) = G_t - beta_t (G_t k_t) k_t^T: p for step t - 1.
      const V gi = vload(g + i);
      store_vec(carry + Carry::dv(d) + i, btv * gi);
      store_vec(p + i, -btv * gi);
    }
    for (int64_t j = 0; j < d.ldk; j += W)
      store_vec(carry + Carry::gte(d) + j, lane_sums(part + j * W));
    kp = kn;
  }
  if (a.dh0 != nullptr) {
    apply_update_t(wk.state.data(), kp, p, d);
    store_state_t(wk.state.data(), static_cast<S*>(a.dh0) + head, d);
  }
}

// Forward-again pass over one (b, h), in S's layout, from wk.carry: dv, dk = (the reverse
// pass's part) - S_{t-1}^T dv_t and dq = scale S_t^T do_t = scale (S_{t-1}^T do_t +
// (c_t . do_t) k_t), c_t = beta_t w_t.
template <class S>
void gradient_head(const DeltaRuleBackwardArgs& a, int64_t b, int64_t h, Work<S>& wk) {
  using V = VecT<S>;
  const Dims& d = wk.d;
  const Seq<S> dq(a.dq, b, h), dk(a.dk, b, h), dv(a.dv, b, h);
  const int64_t head = (b * a.n.heads + h) * d.dk * d.dv;
  wk.clear();
  load_state(wk.state.data(), a.h0 ? static_cast<const S*>(a.h0) + head : nullptr, d);
  const S* kp = wk.ka.data();  // k_{t-1} and c_{t-1}: zeros at first
  const S* cp = wk.coef.data();
  const S* u = wk.col1.data();
  const S* uq = wk.col2.data();
  const V scale = Vec<S>::broadcast(S(a.scale));
  for (int64_t t = 0; t < d.steps; ++t) {
    if (t + kAhead < d.steps) {
      prefetch_span(dv.at(t + kAhead), d.dv);
      prefetch_span(dk.at(t + kAhead), d.dk);
      prefetch_span(dq.at(t + kAhead), d.dk);
    }
    const S* carry = wk.carry.data() + t * Carry::size(d);
    const S* kn = carry + Carry::k(d);
    const S* gte = carry + Carry::gte(d);
    const S* dos = carry + Carry::dout(d);
    const S* cn = carry + Carry::c(d);
    const S* dvt = carry + Carry::dv(d);
    forward_all_cols<S, true>(wk.state.data(), d.dv, d.ldk, cp, kp, dvt, dos, wk.col1.data(),
                              wk.col2.data());
    const V cdo = Vec<S>::broadcast(dot(cn, dos, d.dv));
    update_row(dv.at(t), d.dv, [&](V, int64_t i) { return vload(dvt + i); });
    update_row(dk.at(t), d.dk, [&](V, int64_t j) { return vload(gte + j) - vload(u + j); });
    update_row(dq.at(t), d.dk,
               [&](V, int64_t j) { return scale * fmadd(cdo, vload(kn + j), vload(uq + j)); });
    kp = kn;
    cp = cn;
  }
}

// Runs body(work, b, h) for every (b, h), the heads spread over the threads.
template <class S, class Body>
void for_each_head(const DeltaRuleSizes& n, int threads, bool backward, bool recompute_w,
                   Body body) {
  const int64_t heads = n.batch * n.heads;
  const int nt = int(std::max<int64_t>(1, std::min<int64_t>(threads, heads)));
  const Dims dims = Dims::of<S>(n);
  // Allocated here, not in the parallel region: a failed allocation then reaches the caller.
  std::vector<Work<S>> works;
  works.reserve(nt);
  for (int i = 0; i < nt; ++i) works.emplace_back(dims, backward, recompute_w);
  ParallelErrors errors;
#pragma omp parallel for num_threads(nt) schedule(static, 1)
  for (int64_t bh = 0; bh < heads; ++bh) errors.run([&] {
#if defined(_OPENMP)
    Work<S>& wk = works[omp_get_thread_num()];
#else
    Work<S>& wk = works[0];
#endif
    body(wk, bh / n.heads, bh % n.heads);
  });
  errors.rethrow();
}

template <class S, class T> void forward_typed(const DeltaRuleForwardArgs& a) {
  const ForwardInputs in{a.n, a.q, a.k, a.v, a.beta, a.h0, a.scale};
  S* last = static_cast<S*>(a.last_state);
  for_each_head<S>(a.n, a.threads, false, false, [&](Work<S>& wk, int64_t b, int64_t h) {
    const Seq<S> keep = a.w.data ? Seq<S>(a.w, b, h) : Seq<S>(nullptr, 0);
    forward_head<S, T, true>(in, a.o, last, b, h, wk, keep);
  });
}

template <class S, class T> void backward_typed(const DeltaRuleBackwardArgs& a) {
  const ForwardInputs in{a.n, a.q, a.k, a.v, a.beta, a.h0, a.scale};
  const bool given = a.w.data != nullptr;
  for_each_head<S>(a.n, a.threads, true, !given, [&](Work<S>& wk, int64_t b, int64_t h) {
    Seq<const S> w(wk.w.data(), wk.d.dv);
    if (given)
      w = Seq<const S>(a.w, b, h);
    else
      forward_head<S, T, false>(in, SeqOut{}, nullptr, b, h, wk, Seq<S>(wk.w.data(), wk.d.dv));
    reverse_head<S, T>(a, b, h, wk, w);
    gradient_head<S>(a, b, h, wk);
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
