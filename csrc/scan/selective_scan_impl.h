// Selective scan kernels, written once over common/vec.h vectors and compiled per ISA. One
// thread runs a channel (b, d) at a time with its state in registers, vectorized over N, time
// staged in chunks of kChunk steps; B and C are first transposed to (L, N) panels so each step
// reads contiguous vectors. Forward reads u, delta, z and the panels once, writes out once.
// Backward recomputes: one pass stores the state at segment starts (none when the sequence
// is one segment), then per segment in reverse the states are recomputed into L2 and stepped
// back; scratch is 256 KiB + L * N / seg states per thread, plus per-block dB / dC partials.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/aligned.h"
#include "common/memory.h"
#include "common/parallel.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "scan/selective_scan.h"

namespace kernelkit {
namespace KK_ISA {
namespace selective_scan_detail {

// Time steps staged per chunk: a multiple of every vector width, small enough that a chunk's
// staged values and per-step lane vectors stay in L1.
constexpr int64_t kChunk = 64;
constexpr double kEighthsLog2e = 8 * 1.4426950408889634;  // A is kept as A * 8 log2(e)

template <class S> constexpr int kW = Vec<S>::W;
template <class S> constexpr int kMaxNv = int(kSelectiveScanMaxN) / kW<S>;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Threads worth starting for `work` element-steps: waking a pool costs about as much as
// 2**16 of them, and far more when another process holds a core.
inline int threads_for(int threads, int64_t work) {
  return int(std::max<int64_t>(1, std::min<int64_t>(threads, work >> 16)));
}

// B or C in the compute type, one time step's N values contiguous and zero-padded to Np:
// variable (batch, G, L, Np), or constant (dim, Np) read at every step (step 0).
template <class S> struct Panel {
  AlignedVector<S> data;
  int64_t groups = 0, dim = 0, length = 0, np = 0;

  const S* channel(int64_t b, int64_t d) const {
    if (groups == 0) return data.data() + d * np;
    return data.data() + (b * groups + d / (dim / groups)) * length * np;
  }
  int64_t step() const { return groups == 0 ? 0 : np; }
};

// Converts and transposes src into the panel. A worksharing loop without a barrier: called
// by every thread of the enclosing parallel region (or serially outside one).
template <class S, class T>
void fill_panel(const T* src, Panel<S>& p, int64_t batch, int64_t N, ParallelErrors& errors) {
  const int64_t L = p.length;
  const int64_t blocks = p.groups == 0 ? 1 : (L + kChunk - 1) / kChunk;
  const int64_t rows = p.groups == 0 ? p.dim : batch * p.groups;
#pragma omp for schedule(static) nowait
  for (int64_t job = 0; job < rows * blocks; ++job) errors.run([&] {
    if (p.groups == 0) {
      for (int64_t n = 0; n < N; ++n) p.data[job * p.np + n] = to_compute<S>(src[job * N + n]);
      return;
    }
    const int64_t r = job / blocks, t0 = (job % blocks) * kChunk, t1 = std::min(L, t0 + kChunk);
    S* dst = p.data.data() + r * L * p.np;
    for (int64_t n = 0; n < N; ++n) {
      const T* row = src + (r * N + n) * L;
      for (int64_t t = t0; t < t1; ++t) dst[t * p.np + n] = to_compute<S>(row[t]);
    }
  });
}

template <class S>
void fill_panel(const void* src, DType dtype, Panel<S>& p, const SelectiveScanArgs& a,
                ParallelErrors& e) {
  switch (dtype) {
    case DType::f32: return fill_panel(static_cast<const float*>(src), p, a.batch, a.n_state, e);
    case DType::f64: return fill_panel(static_cast<const double*>(src), p, a.batch, a.n_state, e);
    case DType::f16: return fill_panel(static_cast<const f16_bits*>(src), p, a.batch, a.n_state, e);
    case DType::bf16:
      return fill_panel(static_cast<const bf16_bits*>(src), p, a.batch, a.n_state, e);
  }
}

// An empty (zeroed) panel; fill_panel writes it.
template <class S> Panel<S> make_panel(int64_t groups, const SelectiveScanArgs& a) {
  Panel<S> p;
  p.groups = groups;
  p.dim = a.dim;
  p.length = a.length;
  p.np = round_up(a.n_state, kW<S>);
  p.data.assign(groups == 0 ? a.dim * p.np : a.batch * groups * a.length * p.np, S(0));
  return p;
}

// ---- staging: n values between storage and compute-type buffers ----

template <class S, class T> void load_span(const T* src, S* dst, int64_t n) {
  const int64_t full = n - n % kW<S>;
  for (int64_t i = 0; i < full; i += kW<S>) store_vec(dst + i, load_as<S>(src + i));
  for (int64_t i = full; i < n; ++i) dst[i] = to_compute<S>(src[i]);
}

template <class S, class T> void store_span(const S* src, T* dst, int64_t n) {
  // bfloat16 goes through the scalar rounding: vec.h's vector store assumes NaNs that came
  // from bfloat16 inputs, and B or C may be float32.
  const int64_t full = std::is_same<T, bf16_bits>::value ? 0 : n - n % kW<S>;
  if constexpr (!std::is_same<T, bf16_bits>::value)
    for (int64_t i = 0; i < full; i += kW<S>) store_vec(dst + i, load_as<S>(src + i));
  for (int64_t i = full; i < n; ++i) dst[i] = StoreAs<T>::from(src[i]);
}

// ---- per-thread state ----

template <class S> struct Workspace {
  using V = VecT<S>;
  // Per channel, nv vectors each: A * 8 log2(e), A, the state, and (backward) the carried
  // gradient of the state and the accumulated gradients of A and of constant B / C.
  AlignedVector<V> a8, a, h, carry, dA, dB, dC;
  // Per chunk (x, dt, dtu, u: per backward segment), kChunk values each.
  AlignedVector<S> x, dt, dtu, u, y, z, g, gy, s1, s2, tmp;
  AlignedVector<V> parts, parts2;  // one vector per step, reduced W steps at a time
  // Backward, per segment of `seg` steps: the states (h before the segment first), the
  // exponentials, the outputs C_t . h_t; and the state at each segment start.
  AlignedVector<V> hs, es;
  AlignedVector<S> ys;
  AlignedVector<V> checkpoints;
  int64_t seg = 0;
  S a8_lo = 0, a8_hi = 0;  // the channel's range of A * 8 log2(e)

  // segment = 0: a forward workspace.
  Workspace(int64_t nv, int64_t length, int64_t segment) : seg(segment) {
    for (auto* v : {&a8, &a, &h, &carry, &dA, &dB, &dC}) v->assign(nv, V{});
    // The backward keeps a whole segment's staged u, x, dt and dtu.
    for (auto* v : {&x, &dt, &dtu, &u}) v->assign(std::max(kChunk, seg), S(0));
    for (auto* v : {&y, &z, &g, &gy, &s1, &s2, &tmp}) v->assign(kChunk, S(0));
    parts.assign(kChunk, V{});
    if (seg == 0) return;
    parts2.assign(kChunk, V{});
    hs.assign((seg + 1) * nv, V{});
    es.assign(seg * nv, V{});
    ys.assign(seg, S(0));
    checkpoints.assign(std::max<int64_t>(1, (length + seg - 1) / seg) * nv, V{});
  }
};

// Everything a channel needs, shared by all threads.
template <class S, class T> struct Problem {
  const SelectiveScanArgs& a;
  Panel<S> B, C;
  int64_t np, nv;
  S mul, off;  // dA = mul * exp(dt A) + off: (1, 0), or (2, -1) with negative eigenvalues

  explicit Problem(const SelectiveScanArgs& args)
      : a(args),
        B(make_panel<S>(args.groups_b, args)),
        C(make_panel<S>(args.groups_c, args)),
        np(round_up(args.n_state, kW<S>)),
        nv(np / kW<S>),
        mul(args.negative_eigenvalues ? 2 : 1),
        off(args.negative_eigenvalues ? -1 : 0) {}

  // Inside a parallel region: all threads fill both panels, then wait for each other (errors:
  // the region's, common/parallel.h).
  void fill_panels(ParallelErrors& errors) {
    fill_panel(a.B, a.b_dtype, B, a, errors);
    fill_panel(a.C, a.c_dtype, C, a, errors);
#pragma omp barrier
  }

  const T* seq(const void* base, int64_t b, int64_t d) const {
    return static_cast<const T*>(base) + (b * a.dim + d) * a.length;
  }
  const S* param(const void* base) const { return static_cast<const S*>(base); }
};

// Loads channel d's A (scaled and raw) and initial state into the workspace, zero-padded.
template <class S, class T>
void load_channel(const Problem<S, T>& p, int64_t b, int64_t d, Workspace<S>& ws) {
  S a[kSelectiveScanMaxN] = {}, a8[kSelectiveScanMaxN] = {}, h[kSelectiveScanMaxN] = {};
  const int64_t N = p.a.n_state;
  const S* A = p.param(p.a.A) + d * N;
  const S* h0 = p.a.h0 ? p.param(p.a.h0) + (b * p.a.dim + d) * N : nullptr;
  ws.a8_lo = ws.a8_hi = A[0] * S(kEighthsLog2e);
  for (int64_t n = 0; n < N; ++n) {
    a[n] = A[n];
    a8[n] = A[n] * S(kEighthsLog2e);
    h[n] = h0 ? h0[n] : S(0);
    ws.a8_lo = std::min(ws.a8_lo, a8[n]);
    ws.a8_hi = std::max(ws.a8_hi, a8[n]);
  }
  const size_t bytes = p.np * sizeof(S);
  std::memcpy(ws.a.data(), a, bytes);
  std::memcpy(ws.a8.data(), a8, bytes);
  std::memcpy(ws.h.data(), h, bytes);
}

// Stages steps [t0, t0 + T) of channel (b, d) at offset o of the buffers: u, x = delta + bias,
// dt = softplus?(x), dtu = dt * u. Vector ops run over whole vectors of the kChunk buffers (lanes past T are
// stale and never used).
template <class S, class T>
void stage_steps(const Problem<S, T>& p, int64_t b, int64_t d, int64_t t0, int64_t T_,
                 Workspace<S>& ws, int64_t o = 0) {
  using V = VecT<S>;
  S *u = ws.u.data() + o, *x = ws.x.data() + o, *dt = ws.dt.data() + o, *dtu = ws.dtu.data() + o;
  load_span(p.seq(p.a.u, b, d) + t0, u, T_);
  load_span(p.seq(p.a.delta, b, d) + t0, x, T_);
  const V bias = Vec<S>::broadcast(p.a.delta_bias ? p.param(p.a.delta_bias)[d] : S(0));
  for (int64_t t = 0; t < T_; t += kW<S>) {
    const V xv = load_as<S>(x + t) + bias;
    const V dtv = p.a.softplus ? softplus_vec(xv) : xv;
    store_vec(x + t, xv);
    store_vec(dt + t, dtv);
    store_vec(dtu + t, dtv * load_as<S>(u + t));
  }
}

// The recurrence over T steps of a chunk. kY: store C_t * h_t (a lane vector) per step in
// parts; kStore: store every state (after h_{t0-1} at hs[0..nv)) and exp(dt A) for the
// backward. NV > 0 fixes the vector count at compile time so the state stays in registers.
// kInRange: every dt A 8 log2(e) of the chunk lies in [-1000, 1000] (see exp_args_in_range).
template <class S, int NV, bool kY, bool kStore, bool kNeg, bool kInRange>
void run_steps(int64_t nv_rt, const VecT<S>* a8, VecT<S>* h_io, const S* dt, const S* dtu,
               const S* B, int64_t b_step, const S* C, int64_t c_step, int64_t T_,
               VecT<S>* parts, VecT<S>* hs, VecT<S>* es) {
  using V = VecT<S>;
  constexpr int W = kW<S>;
  const int nv = NV > 0 ? NV : int(nv_rt);
  const V two = Vec<S>::broadcast(2), one = Vec<S>::broadcast(1);
  const V eighth = Vec<S>::broadcast(0.125);
  V h[NV > 0 ? NV : kMaxNv<S>];
  for (int k = 0; k < nv; ++k) h[k] = h_io[k];
  if constexpr (kStore)
    for (int k = 0; k < nv; ++k) hs[k] = h[k];
  for (int64_t t = 0; t < T_; ++t) {
    const V dtv = Vec<S>::broadcast(dt[t]), duv = Vec<S>::broadcast(dtu[t]);
    const S* Bt = B + t * b_step;
    const S* Ct = C + t * c_step;
    V acc{};
#pragma GCC unroll 4
    for (int k = 0; k < nv; ++k) {
      const V e = kInRange ? exp2_eighths_in_range(dtv * a8[k]) : exp2_vec(dtv * a8[k] * eighth);
      const V da = kNeg ? fmadd(e, two, -one) : e;
      h[k] = fmadd(da, h[k], duv * load_as<S>(Bt + k * W));
      if constexpr (kY) acc = fmadd(load_as<S>(Ct + k * W), h[k], acc);
      if constexpr (kStore) {
        hs[(t + 1) * nv + k] = h[k];
        es[t * nv + k] = e;
      }
    }
    if constexpr (kY) parts[t] = acc;
  }
  for (int k = 0; k < nv; ++k) h_io[k] = h[k];
}

template <class S, bool kY, bool kStore, bool kNeg, bool kInRange>
void run_steps_nv(int64_t nv, const VecT<S>* a8, VecT<S>* h, const S* dt, const S* dtu,
                  const S* B, int64_t b_step, const S* C, int64_t c_step, int64_t T_,
                  VecT<S>* parts, VecT<S>* hs, VecT<S>* es) {
  switch (nv) {
    case 1: return run_steps<S, 1, kY, kStore, kNeg, kInRange>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
    case 2: return run_steps<S, 2, kY, kStore, kNeg, kInRange>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
    case 4: return run_steps<S, 4, kY, kStore, kNeg, kInRange>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
    default: return run_steps<S, 0, kY, kStore, kNeg, kInRange>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
  }
}

// True when dt[t] * a8[n] lies in [-1000, 1000] for every step of the chunk and every n, the
// range of exp2_eighths_in_range: a8 spans [a8_lo, a8_hi] and the product is linear in a8,
// so both ends are checked per step. The ordered compares make a NaN or inf fail the test.
template <class S> bool exp_args_in_range(const S* dt, int64_t T_, S a8_lo, S a8_hi) {
  using V = VecT<S>;
  const V lo = Vec<S>::broadcast(a8_lo), hi = Vec<S>::broadcast(a8_hi);
  const V bound = Vec<S>::broadcast(1000);
  auto ok = V{} == V{};  // all true
  // Whole vectors: a stale lane past T_ can only fail the test, which is slower, never wrong.
  for (int64_t t = 0; t < T_; t += kW<S>) {
    const V x = load_as<S>(dt + t);
    const V p = x * lo, q = x * hi;
    ok &= (p >= -bound) & (p <= bound) & (q >= -bound) & (q <= bound);
  }
  for (int j = 0; j < kW<S>; ++j)
    if (!ok[j]) return false;
  return true;
}

// mul = 2 selects the negative-eigenvalue transition 2 exp(dt A) - 1 (see Problem);
// in_range = exp_args_in_range(dt, T_, ...) selects exp2 without clamps.
template <class S, bool kY, bool kStore>
void run_steps_dispatch(int64_t nv, const VecT<S>* a8, VecT<S>* h, const S* dt, const S* dtu,
                        const S* B, int64_t b_step, const S* C, int64_t c_step, S mul,
                        bool in_range, int64_t T_, VecT<S>* parts, VecT<S>* hs, VecT<S>* es) {
  const bool neg = mul != S(1);
  if (neg && in_range)
    return run_steps_nv<S, kY, kStore, true, true>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
  if (neg)
    return run_steps_nv<S, kY, kStore, true, false>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
  if (in_range)
    return run_steps_nv<S, kY, kStore, false, true>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
  run_steps_nv<S, kY, kStore, false, false>(nv, a8, h, dt, dtu, B, b_step, C, c_step, T_, parts, hs, es);
}

// y[t] = sum of the lanes of parts[t], W steps at a time (whole vectors of the buffers).
template <class S> void reduce_parts(const VecT<S>* parts, int64_t T_, S* y) {
  for (int64_t t = 0; t < T_; t += kW<S>) store_vec(y + t, sum_lanes_transposed(parts + t));
}

// ---- forward ----

template <class S, class T>
void channel_forward(const Problem<S, T>& p, int64_t b, int64_t d, Workspace<S>& ws,
                     const SelectiveScanOutputs& o) {
  using V = VecT<S>;
  const int64_t L = p.a.length;
  load_channel(p, b, d, ws);
  const S* Bc = p.B.channel(b, d);
  const S* Cc = p.C.channel(b, d);
  const V Dv = Vec<S>::broadcast(p.a.D ? p.param(p.a.D)[d] : S(0));
  T* out = static_cast<T*>(o.out) + (b * p.a.dim + d) * L;
  for (int64_t t0 = 0; t0 < L; t0 += kChunk) {
    const int64_t T_ = std::min(kChunk, L - t0);
    stage_steps(p, b, d, t0, T_, ws);
    run_steps_dispatch<S, true, false>(p.nv, ws.a8.data(), ws.h.data(), ws.dt.data(),
                                       ws.dtu.data(), Bc + t0 * p.B.step(), p.B.step(),
                                       Cc + t0 * p.C.step(), p.C.step(), p.mul,
                                       exp_args_in_range(ws.dt.data(), T_, ws.a8_lo, ws.a8_hi), T_,
                                       ws.parts.data(), nullptr, nullptr);
    reduce_parts(ws.parts.data(), T_, ws.y.data());
    if (p.a.z) load_span(p.seq(p.a.z, b, d) + t0, ws.z.data(), T_);
    for (int64_t t = 0; t < T_; t += kW<S>) {
      V v = fmadd(Dv, load_as<S>(ws.u.data() + t), load_as<S>(ws.y.data() + t));
      if (p.a.z) v *= silu_vec(load_as<S>(ws.z.data() + t));
      store_vec(ws.tmp.data() + t, v);
    }
    store_span(ws.tmp.data(), out + t0, T_);
  }
  if (o.last_state) {
    S* last = static_cast<S*>(o.last_state) + (b * p.a.dim + d) * p.a.n_state;
    std::memcpy(last, ws.h.data(), p.a.n_state * sizeof(S));
  }
}

// One parallel region per call (each region start and barrier can cost a scheduler tick on
// a busy machine).
template <class S, class T> void forward(const SelectiveScanArgs& a, const SelectiveScanOutputs& o) {
  Problem<S, T> p(a);
  const int64_t channels = a.batch * a.dim;
  // Workspaces are per thread, allocated inside the region: a failure travels out through
  // errors (common/parallel.h), and every later item is skipped.
  ParallelErrors errors;
#pragma omp parallel num_threads(threads_for(a.threads, channels * a.length * p.np))
  {
    p.fill_panels(errors);
    std::optional<Workspace<S>> ws;
    errors.run([&] { ws.emplace(p.nv, a.length, 0); });
#pragma omp for schedule(dynamic, 4)
    for (int64_t c = 0; c < channels; ++c)
      errors.run([&] { channel_forward(p, c / a.dim, c % a.dim, *ws, o); });
  }
  errors.rethrow();
}

// ---- backward ----

// One reverse chunk: from the chunk's stored states hs (h_{t0-1} first) and exponentials es,
// steps t = T-1 .. 0 back, carrying dL/dh in `carry`. Per step it adds gy_t h_t to dC_t and
// gh_t dt_t u_t to dB_t (steps of 0 accumulate constant B / C), accumulates dA, and leaves
// the lane vectors of sum(gh_t B_t) in p1 and of sum(q_t A) in p2 (q = gh h_{t-1} dA/d(dt A)).
template <class S, int NV>
void back_steps(int64_t nv_rt, const VecT<S>* a, VecT<S>* carry_io, VecT<S>* dA_io,
                const S* gy, const S* dt, const S* dtu, const S* B, int64_t b_step, const S* C,
                int64_t c_step, S* dB, int64_t db_step, S* dC, int64_t dc_step, S mul_s, S off_s,
                int64_t T_, const VecT<S>* hs, const VecT<S>* es, VecT<S>* p1, VecT<S>* p2) {
  using V = VecT<S>;
  constexpr int W = kW<S>;
  const int nv = NV > 0 ? NV : int(nv_rt);
  const V mul = Vec<S>::broadcast(mul_s), off = Vec<S>::broadcast(off_s);
  V carry[NV > 0 ? NV : kMaxNv<S>], dA[NV > 0 ? NV : kMaxNv<S>];
  for (int k = 0; k < nv; ++k) {
    carry[k] = carry_io[k];
    dA[k] = dA_io[k];
  }
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const V gv = Vec<S>::broadcast(gy[t]), dtv = Vec<S>::broadcast(dt[t]);
    const V duv = Vec<S>::broadcast(dtu[t]);
    const S* Bt = B + t * b_step;
    const S* Ct = C + t * c_step;
    S* dBt = dB + t * db_step;
    S* dCt = dC + t * dc_step;
    const V* h_t = hs + (t + 1) * nv;
    const V* h_prev = hs + t * nv;
    const V* e = es + t * nv;
    V s1{}, s2{};
#pragma GCC unroll 4
    for (int k = 0; k < nv; ++k) {
      const V gh = fmadd(gv, load_as<S>(Ct + k * W), carry[k]);
      store_vec(dCt + k * W, fmadd(gv, h_t[k], load_as<S>(dCt + k * W)));
      store_vec(dBt + k * W, fmadd(gh, duv, load_as<S>(dBt + k * W)));
      s1 = fmadd(gh, load_as<S>(Bt + k * W), s1);
      const V em = e[k] * mul;
      const V q = gh * h_prev[k] * em;
      s2 = fmadd(q, a[k], s2);
      dA[k] = fmadd(q, dtv, dA[k]);
      carry[k] = (em + off) * gh;
    }
    p1[t] = s1;
    p2[t] = s2;
  }
  for (int k = 0; k < nv; ++k) {
    carry_io[k] = carry[k];
    dA_io[k] = dA[k];
  }
}

template <class S>
void back_steps_dispatch(int64_t nv, const VecT<S>* a, VecT<S>* carry, VecT<S>* dA, const S* gy,
                         const S* dt, const S* dtu, const S* B, int64_t b_step, const S* C,
                         int64_t c_step, S* dB, int64_t db_step, S* dC, int64_t dc_step, S mul,
                         S off, int64_t T_, const VecT<S>* hs, const VecT<S>* es, VecT<S>* p1,
                         VecT<S>* p2) {
  switch (nv) {
    case 1: return back_steps<S, 1>(nv, a, carry, dA, gy, dt, dtu, B, b_step, C, c_step, dB, db_step, dC, dc_step, mul, off, T_, hs, es, p1, p2);
    case 2: return back_steps<S, 2>(nv, a, carry, dA, gy, dt, dtu, B, b_step, C, c_step, dB, db_step, dC, dc_step, mul, off, T_, hs, es, p1, p2);
    case 4: return back_steps<S, 4>(nv, a, carry, dA, gy, dt, dtu, B, b_step, C, c_step, dB, db_step, dC, dc_step, mul, off, T_, hs, es, p1, p2);
    default: return back_steps<S, 0>(nv, a, carry, dA, gy, dt, dtu, B, b_step, C, c_step, dB, db_step, dC, dc_step, mul, off, T_, hs, es, p1, p2);
  }
}

// Channels are processed in blocks of consecutive channels that share their B and C groups.
// Each block owns (L, Np) partial sums of variable dB / dC; per (b, d) partials hold the
// parameters' gradients. Both are summed in a fixed order at the end: the result does not
// depend on the thread count or on which thread ran which block.
struct Block {
  int64_t b, d0, d1;
};

template <class S> struct Partials {
  std::vector<Block> blocks;
  std::vector<S> dB_blk, dC_blk;       // (blocks, L, Np), variable B / C only
  std::vector<S> dA, dB, dC;           // (batch, dim, Np); dB / dC for constant B / C
  std::vector<S> dD, dbias;            // (batch, dim)
};

inline int64_t gcd64(int64_t x, int64_t y) { return y == 0 ? x : gcd64(y, x % y); }

// Block size: enough channels that the blocks' partials (nvar * L * Np values each) take at
// most the bytes of u and delta for those channels, and at least 32 channels.
template <class S> int64_t block_channels(const SelectiveScanArgs& a, int64_t np, int64_t span) {
  const int64_t nvar = (a.groups_b > 0) + (a.groups_c > 0);
  const int64_t itemsize = a.dtype == DType::f64 ? 8 : a.dtype == DType::f32 ? 4 : 2;
  const int64_t k = (nvar * np * int64_t(sizeof(S)) + 2 * itemsize - 1) / (2 * itemsize);
  return std::max<int64_t>(1, std::min(span, std::max<int64_t>(32, k)));
}

template <class S, class T>
Partials<S> make_partials(const Problem<S, T>& p) {
  const SelectiveScanArgs& a = p.a;
  Partials<S> r;
  const int64_t gb = std::max<int64_t>(1, a.groups_b), gc = std::max<int64_t>(1, a.groups_c);
  const int64_t span = a.dim / (gb / gcd64(gb, gc) * gc);  // channels sharing both groups
  const int64_t k = block_channels<S>(a, p.np, span);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t g0 = 0; g0 < a.dim; g0 += span)
      for (int64_t d0 = g0; d0 < g0 + span; d0 += k) r.blocks.push_back({b, d0, std::min(d0 + k, g0 + span)});
  const int64_t blk = int64_t(r.blocks.size()) * a.length * p.np;
  if (a.groups_b > 0) r.dB_blk.assign(blk, S(0));
  if (a.groups_c > 0) r.dC_blk.assign(blk, S(0));
  const int64_t per = a.batch * a.dim;
  r.dA.assign(per * p.np, S(0));
  if (a.groups_b == 0) r.dB.assign(per * p.np, S(0));
  if (a.groups_c == 0) r.dC.assign(per * p.np, S(0));
  r.dD.assign(per, S(0));
  r.dbias.assign(per, S(0));
  return r;
}

// Gradients of z and of the scan output y from grad_out, the recomputed y and the staged u
// (T_ values each) and z:
// out = o * silu(z), o = y + D u.
template <class S, class T>
void output_grads(const Problem<S, T>& p, const SelectiveScanGrads& g, int64_t b, int64_t d,
                  int64_t t0, int64_t T_, S Dd, const S* y, const S* u, Workspace<S>& ws) {
  using V = VecT<S>;
  load_span(p.seq(g.grad_out, b, d) + t0, ws.g.data(), T_);
  if (!p.a.z) {
    std::memcpy(ws.gy.data(), ws.g.data(), T_ * sizeof(S));
    return;
  }
  load_span(p.seq(p.a.z, b, d) + t0, ws.z.data(), T_);
  const V Dv = Vec<S>::broadcast(Dd);
  for (int64_t t = 0; t < T_; t += kW<S>) {
    const V z = load_as<S>(ws.z.data() + t), gout = load_as<S>(ws.g.data() + t);
    const V o = fmadd(Dv, load_as<S>(u + t), load_as<S>(y + t));
    const V sg = sigmoid_vec(z);
    store_vec(ws.gy.data() + t, gout * z * sg);
    store_vec(ws.tmp.data() + t, gout * o * sg * (1.0f + z * (1.0f - sg)));
  }
  S* dz = static_cast<S*>(g.dz) + (b * p.a.dim + d) * p.a.length + t0;
  std::memcpy(dz, ws.tmp.data(), T_ * sizeof(S));
}

// Steps recomputed at once by the backward: a multiple of kChunk whose states and
// exponentials (2 * seg * Np values) fit in 256 KiB of L2. A sequence no longer than that
// needs no checkpoint pass.
template <class S> int64_t segment_steps(int64_t np) {
  const int64_t fit = (int64_t(1) << 18) / (2 * np * int64_t(sizeof(S)));
  return std::max<int64_t>(1, fit / kChunk) * kChunk;
}

// The reverse pass walks each channel's rows backwards in short chunks, which the hardware
// prefetchers do not follow: ask for the next chunk's z and grad_out in advance (u and delta
// were staged with the segment).
template <class S, class T>
void prefetch_chunk(const Problem<S, T>& p, const SelectiveScanGrads& g, int64_t b, int64_t d,
                    int64_t t0) {
  for (const void* base : {p.a.z, g.grad_out})
    if (base) prefetch_span(p.seq(base, b, d) + t0, kChunk);
}

template <class S, class T>
void channel_backward(const Problem<S, T>& p, const SelectiveScanGrads& g, int64_t b, int64_t d,
                      S* dB_blk, S* dC_blk, Partials<S>& part, Workspace<S>& ws) {
  using V = VecT<S>;
  const SelectiveScanArgs& a = p.a;
  const int64_t L = a.length, N = a.n_state, nv = p.nv, bd = b * a.dim + d;
  load_channel(p, b, d, ws);
  const S* Bc = p.B.channel(b, d);
  const S* Cc = p.C.channel(b, d);
  const int64_t bs = p.B.step(), cs = p.C.step();
  // Pass 1: the state at every segment start.
  const int64_t seg = ws.seg, segments = (L + seg - 1) / seg;
  for (int64_t sg = 0; sg < segments; ++sg) {
    std::memcpy(ws.checkpoints.data() + sg * nv, ws.h.data(), nv * sizeof(V));
    if (sg + 1 == segments) break;
    for (int64_t t0 = sg * seg; t0 < (sg + 1) * seg; t0 += kChunk) {
      stage_steps(p, b, d, t0, kChunk, ws);
      run_steps_dispatch<S, false, false>(nv, ws.a8.data(), ws.h.data(), ws.dt.data(),
                                          ws.dtu.data(), Bc + t0 * bs, bs, Cc + t0 * cs, cs,
                                          p.mul, exp_args_in_range(ws.dt.data(), kChunk, ws.a8_lo, ws.a8_hi),
                                          kChunk, nullptr, nullptr, nullptr);
    }
  }
  // Pass 2: segments in reverse, each recomputed from its checkpoint, then stepped back
  // chunk by chunk.
  std::memset(static_cast<void*>(ws.carry.data()), 0, nv * sizeof(V));
  if (g.grad_last_state)
    std::memcpy(ws.carry.data(), static_cast<const S*>(g.grad_last_state) + bd * N, N * sizeof(S));
  for (auto* acc : {&ws.dA, &ws.dB, &ws.dC})
    std::memset(static_cast<void*>(acc->data()), 0, nv * sizeof(V));
  const S Dd = a.D ? p.param(a.D)[d] : S(0);
  S dD = 0, dbias = 0;
  V dD_v{}, dbias_v{};  // sums over whole vectors of steps (lane j: steps = j mod W)
  S* du = static_cast<S*>(g.du) + bd * L;
  S* ddelta = static_cast<S*>(g.ddelta) + bd * L;
  const bool var_b = a.groups_b > 0, var_c = a.groups_c > 0;
  S* dBv = var_b ? dB_blk : reinterpret_cast<S*>(ws.dB.data());
  S* dCv = var_c ? dC_blk : reinterpret_cast<S*>(ws.dC.data());
  const int64_t dbs = var_b ? p.np : 0, dcs = var_c ? p.np : 0;
  for (int64_t sg = segments - 1; sg >= 0; --sg) {
    const int64_t s0 = sg * seg, s1 = std::min(L, s0 + seg);
    std::memcpy(ws.h.data(), ws.checkpoints.data() + sg * nv, nv * sizeof(V));
    for (int64_t t0 = s0; t0 < s1; t0 += kChunk) {
      const int64_t T_ = std::min(kChunk, s1 - t0), o = t0 - s0;
      stage_steps(p, b, d, t0, T_, ws, o);
      const bool in_range = exp_args_in_range(ws.dt.data() + o, T_, ws.a8_lo, ws.a8_hi);
      if (a.z) {
        run_steps_dispatch<S, true, true>(nv, ws.a8.data(), ws.h.data(), ws.dt.data() + o,
                                          ws.dtu.data() + o, Bc + t0 * bs, bs, Cc + t0 * cs, cs,
                                          p.mul, in_range, T_, ws.parts.data(),
                                          ws.hs.data() + o * nv, ws.es.data() + o * nv);
        reduce_parts(ws.parts.data(), T_, ws.ys.data() + o);
      } else {
        run_steps_dispatch<S, false, true>(nv, ws.a8.data(), ws.h.data(), ws.dt.data() + o,
                                           ws.dtu.data() + o, Bc + t0 * bs, bs, Cc + t0 * cs, cs,
                                           p.mul, in_range, T_, nullptr, ws.hs.data() + o * nv,
                                           ws.es.data() + o * nv);
      }
    }
    for (int64_t t0 = s0 + (s1 - s0 - 1) / kChunk * kChunk; t0 >= s0; t0 -= kChunk) {
      const int64_t T_ = std::min(kChunk, s1 - t0), o = t0 - s0;
      if (t0 > 0) prefetch_chunk(p, g, b, d, t0 - kChunk);
      const S *u = ws.u.data() + o, *x = ws.x.data() + o, *dt = ws.dt.data() + o;
      output_grads(p, g, b, d, t0, T_, Dd, ws.ys.data() + o, u, ws);
      back_steps_dispatch<S>(nv, ws.a.data(), ws.carry.data(), ws.dA.data(), ws.gy.data(),
                             dt, ws.dtu.data() + o, Bc + t0 * bs, bs, Cc + t0 * cs, cs,
                             dBv + t0 * dbs, dbs, dCv + t0 * dcs, dcs, p.mul, p.off, T_,
                             ws.hs.data() + o * nv, ws.es.data() + o * nv, ws.parts.data(),
                             ws.parts2.data());
      reduce_parts(ws.parts.data(), T_, ws.s1.data());
      reduce_parts(ws.parts2.data(), T_, ws.s2.data());
      const V Dv = Vec<S>::broadcast(Dd);
      for (int64_t t = 0; t < T_; t += kW<S>) {
        const V s1 = load_as<S>(ws.s1.data() + t), s2 = load_as<S>(ws.s2.data() + t);
        const V uv = load_as<S>(u + t), gy = load_as<S>(ws.gy.data() + t);
        store_vec(ws.y.data() + t, fmadd(gy, Dv, load_as<S>(dt + t) * s1));
        const V ddt = fmadd(uv, s1, s2);
        const V dd = a.softplus ? ddt * sigmoid_vec(load_as<S>(x + t)) : ddt;
        store_vec(ws.tmp.data() + t, dd);
        if (t + kW<S> > T_) continue;  // the sequence's last, partial vector: added below
        dD_v = fmadd(gy, uv, dD_v);
        dbias_v += dd;
      }
      std::memcpy(du + t0, ws.y.data(), T_ * sizeof(S));
      std::memcpy(ddelta + t0, ws.tmp.data(), T_ * sizeof(S));
      for (int64_t t = T_ - T_ % kW<S>; t < T_; ++t) {
        dD += ws.gy[t] * u[t];
        dbias += ws.tmp[t];
      }
    }
  }
  for (int i = 0; i < kW<S>; ++i) {
    dD += dD_v[i];
    dbias += dbias_v[i];
  }
  if (g.dh0) std::memcpy(static_cast<S*>(g.dh0) + bd * N, ws.carry.data(), N * sizeof(S));
  std::memcpy(part.dA.data() + bd * p.np, ws.dA.data(), p.np * sizeof(S));
  if (!var_b) std::memcpy(part.dB.data() + bd * p.np, ws.dB.data(), p.np * sizeof(S));
  if (!var_c) std::memcpy(part.dC.data() + bd * p.np, ws.dC.data(), p.np * sizeof(S));
  part.dD[bd] = dD;
  part.dbias[bd] = dbias;
}

// out[d * N + n] = sum over b (in order) of part[(b * dim + d) * np + n], for one d.
template <class S>
void sum_over_batch(const std::vector<S>& part, S* out, int64_t d, const SelectiveScanArgs& a,
                    int64_t np) {
  for (int64_t n = 0; n < a.n_state; ++n) {
    S s = 0;
    for (int64_t b = 0; b < a.batch; ++b) s += part[(b * a.dim + d) * np + n];
    out[d * a.n_state + n] = s;
  }
}

// dM[b, g, n, t] = sum over the blocks of (b, g), in order, of blk[block, t, n]. A
// worksharing loop without a barrier, like fill_panel.
template <class S>
void sum_blocks(const Partials<S>& part, const std::vector<S>& blk, S* dM, int64_t groups,
                const SelectiveScanArgs& a, int64_t np, ParallelErrors& errors) {
  const int64_t L = a.length, N = a.n_state, per_group = a.dim / groups;
  const int64_t tblocks = (L + kChunk - 1) / kChunk, jobs = a.batch * groups * tblocks;
#pragma omp for schedule(static) nowait
  for (int64_t job = 0; job < jobs; ++job) errors.run([&] {
    const int64_t bg = job / tblocks, b = bg / groups, grp = bg % groups;
    const int64_t t0 = (job % tblocks) * kChunk, t1 = std::min(L, t0 + kChunk);
    std::vector<S> acc((t1 - t0) * np, S(0));
    for (size_t i = 0; i < part.blocks.size(); ++i) {
      const Block& k = part.blocks[i];
      if (k.b != b || k.d0 / per_group != grp) continue;
      const S* src = blk.data() + (int64_t(i) * L + t0) * np;
      for (int64_t j = 0; j < (t1 - t0) * np; ++j) acc[j] += src[j];
    }
    S* dst = dM + bg * N * L;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t t = t0; t < t1; ++t) dst[n * L + t] = acc[(t - t0) * np + n];
  });
}

template <class S, class T> void backward(const SelectiveScanArgs& a, const SelectiveScanGrads& g) {
  Problem<S, T> p(a);
  Partials<S> part = make_partials(p);
  const int64_t nblocks = int64_t(part.blocks.size()), L = a.length, np = p.np;
  ParallelErrors errors;  // see forward
#pragma omp parallel num_threads(threads_for(a.threads, 4 * a.batch * a.dim * L * np))
  {
    p.fill_panels(errors);
    {
      std::optional<Workspace<S>> ws;
      errors.run([&] { ws.emplace(p.nv, L, segment_steps<S>(np)); });
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < nblocks; ++i) errors.run([&] {
        const Block& k = part.blocks[i];
        S* dB_blk = a.groups_b > 0 ? part.dB_blk.data() + i * L * np : nullptr;
        S* dC_blk = a.groups_c > 0 ? part.dC_blk.data() + i * L * np : nullptr;
        for (int64_t d = k.d0; d < k.d1; ++d)
          channel_backward(p, g, k.b, d, dB_blk, dC_blk, part, *ws);
      });
    }
    if (a.groups_b > 0)
      sum_blocks(part, part.dB_blk, static_cast<S*>(g.dB), a.groups_b, a, np, errors);
    if (a.groups_c > 0)
      sum_blocks(part, part.dC_blk, static_cast<S*>(g.dC), a.groups_c, a, np, errors);
#pragma omp for schedule(static)
    for (int64_t d = 0; d < a.dim; ++d) errors.run([&] {
      sum_over_batch(part.dA, static_cast<S*>(g.dA), d, a, np);
      if (a.groups_b == 0) sum_over_batch(part.dB, static_cast<S*>(g.dB), d, a, np);
      if (a.groups_c == 0) sum_over_batch(part.dC, static_cast<S*>(g.dC), d, a, np);
      S dD = 0, dbias = 0;
      for (int64_t b = 0; b < a.batch; ++b) {
        dD += part.dD[b * a.dim + d];
        dbias += part.dbias[b * a.dim + d];
      }
      if (g.dD) static_cast<S*>(g.dD)[d] = dD;
      if (g.ddelta_bias) static_cast<S*>(g.ddelta_bias)[d] = dbias;
    });
  }
  errors.rethrow();
}

}  // namespace selective_scan_detail

void selective_scan_fwd_run(const SelectiveScanArgs& a, const SelectiveScanOutputs& o) {
  using namespace selective_scan_detail;
  switch (a.dtype) {
    case DType::f32: return forward<float, float>(a, o);
    case DType::f64: return forward<double, double>(a, o);
    case DType::f16: return forward<float, f16_bits>(a, o);
    case DType::bf16: return forward<float, bf16_bits>(a, o);
  }
}

void selective_scan_bwd_run(const SelectiveScanArgs& a, const SelectiveScanGrads& g) {
  using namespace selective_scan_detail;
  switch (a.dtype) {
    case DType::f32: return backward<float, float>(a, g);
    case DType::f64: return backward<double, double>(a, g);
    case DType::f16: return backward<float, f16_bits>(a, g);
    case DType::bf16: return backward<float, bf16_bits>(a, g);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
