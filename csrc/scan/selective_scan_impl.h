// Selective scan kernels, written once over common/vec.h vectors and compiled per ISA. One
// thread runs a channel (b, d) at a time with its state in registers, vectorized over N, time
// staged in chunks of kChunk steps; B and C are first transposed to (L, N) panels so each step
// reads contiguous vectors. Forward reads u, delta, z and the panels once, writes out once.
// Backward recomputes: one pass stores the state at chunk starts, then per chunk in reverse
// the states are recomputed into L1 and stepped back; memory stays O(threads * L * N / kChunk).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "common/vec.h"
#include "common/vec_math.h"
#include "scan/selective_scan.h"

namespace kernelkit {
namespace KK_ISA {
namespace selective_scan_detail {

// Time steps staged per chunk: a multiple of every vector width; the backward's per-chunk
// states and exponentials (2 * kChunk * N values) then stay in L1/L2.
constexpr int64_t kChunk = 64;
constexpr double kLog2e = 1.4426950408889634;

template <class S> constexpr int kW = Vec<S>::W;
template <class S> constexpr int kMaxNv = int(kSelectiveScanMaxN) / kW<S>;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// B or C in the compute type, one time step's N values contiguous and zero-padded to Np:
// variable (batch, G, L, Np), or constant (dim, Np) read at every step (step 0).
template <class S> struct Panel {
  std::vector<S> data;
  int64_t groups = 0, dim = 0, length = 0, np = 0;

  const S* channel(int64_t b, int64_t d) const {
    if (groups == 0) return data.data() + d * np;
    return data.data() + (b * groups + d / (dim / groups)) * length * np;
  }
  int64_t step() const { return groups == 0 ? 0 : np; }
};

template <class S, class T>
void fill_panel(const T* src, Panel<S>& p, int64_t batch, int64_t n_state, int threads) {
  if (p.groups == 0) {
    for (int64_t d = 0; d < p.dim; ++d)
      for (int64_t n = 0; n < n_state; ++n)
        p.data[d * p.np + n] = to_compute<S>(src[d * n_state + n]);
    return;
  }
  const int64_t rows = batch * p.groups, L = p.length;
  const int64_t blocks = (L + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t job = 0; job < rows * blocks; ++job) {
    const int64_t r = job / blocks, t0 = (job % blocks) * kChunk, t1 = std::min(L, t0 + kChunk);
    S* dst = p.data.data() + r * L * p.np;
    for (int64_t n = 0; n < n_state; ++n) {
      const T* row = src + (r * n_state + n) * L;
      for (int64_t t = t0; t < t1; ++t) dst[t * p.np + n] = to_compute<S>(row[t]);
    }
  }
}

template <class S>
Panel<S> make_panel(const void* src, DType dtype, int64_t groups, const SelectiveScanArgs& a) {
  Panel<S> p;
  p.groups = groups;
  p.dim = a.dim;
  p.length = a.length;
  p.np = round_up(a.n_state, kW<S>);
  p.data.assign(groups == 0 ? a.dim * p.np : a.batch * groups * a.length * p.np, S(0));
  switch (dtype) {
    case DType::f32: fill_panel(static_cast<const float*>(src), p, a.batch, a.n_state, a.threads); break;
    case DType::f64: fill_panel(static_cast<const double*>(src), p, a.batch, a.n_state, a.threads); break;
    case DType::f16: fill_panel(static_cast<const f16_bits*>(src), p, a.batch, a.n_state, a.threads); break;
    case DType::bf16: fill_panel(static_cast<const bf16_bits*>(src), p, a.batch, a.n_state, a.threads); break;
  }
  return p;
}

// ---- staging: n values between storage and compute-type buffers ----

template <class S, class T> void load_span(const T* src, S* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kW<S> <= n; i += kW<S>) store_vec(dst + i, load_as<S>(src + i));
  for (; i < n; ++i) dst[i] = to_compute<S>(src[i]);
}

template <class S, class T> void store_span(const S* src, T* dst, int64_t n) {
  int64_t i = 0;
  // bfloat16 goes through the scalar rounding: vec.h's vector store assumes NaNs that came
  // from bfloat16 inputs, and B or C may be float32.
  if constexpr (!std::is_same<T, bf16_bits>::value)
    for (; i + kW<S> <= n; i += kW<S>) store_vec(dst + i, load_as<S>(src + i));
  for (; i < n; ++i) dst[i] = StoreAs<T>::from(src[i]);
}

// ---- per-thread state ----

// A zeroed array of vectors on a 64-byte boundary (std::vector of GCC vector types does not
// reliably honour their 32-byte alignment).
template <class V> class VecBuffer {
 public:
  void assign(int64_t n, V) {
    const size_t bytes = size_t(round_up(std::max<int64_t>(n, 1) * int64_t(sizeof(V)), 64));
    ptr_.reset(static_cast<V*>(std::aligned_alloc(64, bytes)));
    if (!ptr_) throw std::bad_alloc();
    std::memset(static_cast<void*>(ptr_.get()), 0, bytes);
  }
  V* data() { return ptr_.get(); }
  const V* data() const { return ptr_.get(); }
  V& operator[](int64_t i) { return ptr_.get()[i]; }

 private:
  struct Free {
    void operator()(V* p) const { std::free(p); }
  };
  std::unique_ptr<V, Free> ptr_;
};

template <class S> struct Workspace {
  using V = VecT<S>;
  // Per channel, nv vectors each: A * log2(e), A, the state, and (backward) the carried
  // gradient of the state and the accumulated gradients of A and of constant B / C.
  VecBuffer<V> a2, a, h, carry, dA, dB, dC;
  // Per chunk, kChunk values each.
  std::vector<S> x, dt, dtu, u, y, z, g, gy, s1, s2, tmp;
  VecBuffer<V> parts, parts2;  // one vector per step, reduced W steps at a time
  VecBuffer<V> hs, es;           // backward: states h_{t-1..} and exponentials of a chunk
  VecBuffer<V> checkpoints;     // backward: the state at each chunk start

  Workspace(int64_t nv, int64_t length, bool backward) {
    for (auto* v : {&a2, &a, &h, &carry, &dA, &dB, &dC}) v->assign(nv, V{});
    for (auto* v : {&x, &dt, &dtu, &u, &y, &z, &g, &gy, &s1, &s2, &tmp}) v->assign(kChunk, S(0));
    parts.assign(kChunk, V{});
    if (!backward) return;
    parts2.assign(kChunk, V{});
    hs.assign((kChunk + 1) * nv, V{});
    es.assign(kChunk * nv, V{});
    checkpoints.assign(std::max<int64_t>(1, (length + kChunk - 1) / kChunk) * nv, V{});
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
        B(make_panel<S>(args.B, args.b_dtype, args.groups_b, args)),
        C(make_panel<S>(args.C, args.c_dtype, args.groups_c, args)),
        np(round_up(args.n_state, kW<S>)),
        nv(np / kW<S>),
        mul(args.negative_eigenvalues ? 2 : 1),
        off(args.negative_eigenvalues ? -1 : 0) {}

  const T* seq(const void* base, int64_t b, int64_t d) const {
    return static_cast<const T*>(base) + (b * a.dim + d) * a.length;
  }
  const S* param(const void* base) const { return static_cast<const S*>(base); }
};

// Loads channel d's A (scaled and raw) and initial state into the workspace, zero-padded.
template <class S, class T>
void load_channel(const Problem<S, T>& p, int64_t b, int64_t d, Workspace<S>& ws) {
  S a[kSelectiveScanMaxN] = {}, a2[kSelectiveScanMaxN] = {}, h[kSelectiveScanMaxN] = {};
  const int64_t N = p.a.n_state;
  const S* A = p.param(p.a.A) + d * N;
  const S* h0 = p.a.h0 ? p.param(p.a.h0) + (b * p.a.dim + d) * N : nullptr;
  for (int64_t n = 0; n < N; ++n) {
    a[n] = A[n];
    a2[n] = A[n] * S(kLog2e);
    h[n] = h0 ? h0[n] : S(0);
  }
  const size_t bytes = p.np * sizeof(S);
  std::memcpy(ws.a.data(), a, bytes);
  std::memcpy(ws.a2.data(), a2, bytes);
  std::memcpy(ws.h.data(), h, bytes);
}

// Stages steps [t0, t0 + T) of channel (b, d): u, x = delta + bias, dt = softplus?(x),
// dtu = dt * u. Vector ops run over whole vectors of the kChunk buffers (lanes past T are
// stale and never used).
template <class S, class T>
void stage_steps(const Problem<S, T>& p, int64_t b, int64_t d, int64_t t0, int64_t T_,
                 Workspace<S>& ws) {
  using V = VecT<S>;
  load_span(p.seq(p.a.u, b, d) + t0, ws.u.data(), T_);
  load_span(p.seq(p.a.delta, b, d) + t0, ws.x.data(), T_);
  const V bias = Vec<S>::broadcast(p.a.delta_bias ? p.param(p.a.delta_bias)[d] : S(0));
  for (int64_t t = 0; t < T_; t += kW<S>) {
    const V x = load_as<S>(ws.x.data() + t) + bias;
    const V dt = p.a.softplus ? softplus_vec(x) : x;
    store_vec(ws.x.data() + t, x);
    store_vec(ws.dt.data() + t, dt);
    store_vec(ws.dtu.data() + t, dt * load_as<S>(ws.u.data() + t));
  }
}

// The recurrence over T steps of a chunk. kY: store C_t * h_t (a lane vector) per step in
// parts; kStore: store every state (after h_{t0-1} at hs[0..nv)) and exp(dt A) for the
// backward. NV > 0 fixes the vector count at compile time so the state stays in registers.
template <class S, int NV, bool kY, bool kStore>
void run_steps(int64_t nv_rt, const VecT<S>* a2, VecT<S>* h_io, const S* dt, const S* dtu,
               const S* B, int64_t b_step, const S* C, int64_t c_step, S mul_s, S off_s,
               int64_t T_, VecT<S>* parts, VecT<S>* hs, VecT<S>* es) {
  using V = VecT<S>;
  constexpr int W = kW<S>;
  const int nv = NV > 0 ? NV : int(nv_rt);
  const V mul = Vec<S>::broadcast(mul_s), off = Vec<S>::broadcast(off_s);
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
      const V e = exp2_vec(dtv * a2[k]);
      h[k] = fmadd(fmadd(e, mul, off), h[k], duv * load_as<S>(Bt + k * W));
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

template <class S, bool kY, bool kStore>
void run_steps_dispatch(int64_t nv, const VecT<S>* a2, VecT<S>* h, const S* dt, const S* dtu,
                        const S* B, int64_t b_step, const S* C, int64_t c_step, S mul, S off,
                        int64_t T_, VecT<S>* parts, VecT<S>* hs, VecT<S>* es) {
  switch (nv) {
    case 1: return run_steps<S, 1, kY, kStore>(nv, a2, h, dt, dtu, B, b_step, C, c_step, mul, off, T_, parts, hs, es);
    case 2: return run_steps<S, 2, kY, kStore>(nv, a2, h, dt, dtu, B, b_step, C, c_step, mul, off, T_, parts, hs, es);
    case 4: return run_steps<S, 4, kY, kStore>(nv, a2, h, dt, dtu, B, b_step, C, c_step, mul, off, T_, parts, hs, es);
    default: return run_steps<S, 0, kY, kStore>(nv, a2, h, dt, dtu, B, b_step, C, c_step, mul, off, T_, parts, hs, es);
  }
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
    run_steps_dispatch<S, true, false>(p.nv, ws.a2.data(), ws.h.data(), ws.dt.data(),
                                       ws.dtu.data(), Bc + t0 * p.B.step(), p.B.step(),
                                       Cc + t0 * p.C.step(), p.C.step(), p.mul, p.off, T_,
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

template <class S, class T> void forward(const SelectiveScanArgs& a, const SelectiveScanOutputs& o) {
  const Problem<S, T> p(a);
  const int64_t channels = a.batch * a.dim;
#pragma omp parallel num_threads(a.threads)
  {
    Workspace<S> ws(p.nv, a.length, false);
#pragma omp for schedule(dynamic, 4)
    for (int64_t c = 0; c < channels; ++c) channel_forward(p, c / a.dim, c % a.dim, ws, o);
  }
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

}  // namespace KK_ISA
}  // namespace kernelkit
