// Linear scan kernels, written once over 256-bit vectors and compiled once per ISA
// (linear_scan.cpp, linear_scan_avx2.cpp). Every path reads a and x once and writes h once.
// Time-contiguous rows: 4W rows at a time (W = 8 floats / 4 doubles), W x W blocks transposed
// in registers into a time-major L1 scratch chunk, the recurrence run down the chunk as 4
// independent vectors (hiding FMA latency), transposed back out. Time strided, batch dim
// contiguous: vectors straight across the contiguous dim. Anything else: one scalar loop per
// sequence (also complex values with time contiguous).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/vec.h"
#include "scan/linear_scan.h"

namespace kernelkit {
namespace KK_ISA {
namespace linear_scan_detail {

// Steps per scratch chunk: a and x chunks of kChunk x 4W compute values stay in L1 (16 KiB).
constexpr int kChunk = 64;
// Independent vectors advanced per step: 4 FMA chains cover the FMA latency.
constexpr int kGroup = 4;
// Below this many elements per thread a call stays on fewer threads.
constexpr int64_t kMinElementsPerThread = int64_t(1) << 15;

// An operand over (n0, len, n1), strides in storage units (2 per complex element).
template <class T> struct View {
  T* p;
  int64_t s0, st, s1;
  T* at(int64_t i0, int64_t i1) const { return p + i0 * s0 + i1 * s1; }
};

template <class T> struct Problem {
  View<const T> a, x;
  View<T> out;
  const T* h0;
  int64_t h0_s0, h0_s1;
  int64_t n0, len, n1;
  bool reverse, conj_a;
  int threads;
};

template <class T> Problem<T> make_problem(const LinearScanArgs& args) {
  const int64_t e = args.is_complex ? 2 : 1;
  auto view = [e](auto* p, const ScanStrides& s) {
    return View<std::remove_pointer_t<decltype(p)>>{p, s.s0 * e, s.st * e, s.s1 * e};
  };
  return Problem<T>{view(static_cast<const T*>(args.a), args.a_strides),
                    view(static_cast<const T*>(args.x), args.x_strides),
                    view(static_cast<T*>(args.out), args.out_strides),
                    static_cast<const T*>(args.h0), args.h0_s0 * e, args.h0_s1 * e,
                    args.n0, args.len, args.n1, args.reverse, args.conj_a, args.threads};
}

inline int threads_for(int threads, int64_t items, int64_t elements) {
  const int64_t useful = std::max<int64_t>(1, elements / kMinElementsPerThread);
  return int(std::max<int64_t>(1, std::min<int64_t>({int64_t(threads), items, useful})));
}

// Where sequence (i0, i1) of v starts in scan order, and its step in that order.
template <class T> KK_INLINE T* seq_start(const View<T>& v, int64_t i0, int64_t i1,
                                          int64_t len, bool reverse) {
  return v.at(i0, i1) + (reverse ? (len - 1) * v.st : 0);
}

// ---- scalar: any strides, any dtype ----------------------------------------------------

template <class S, class T>
void scan_sequence_real(const Problem<T>& p, int64_t i0, int64_t i1) {
  const int64_t dir = p.reverse ? -1 : 1;
  const T* a = seq_start(p.a, i0, i1, p.len, p.reverse);
  const T* x = seq_start(p.x, i0, i1, p.len, p.reverse);
  T* o = seq_start(p.out, i0, i1, p.len, p.reverse);
  const int64_t ast = dir * p.a.st, xst = dir * p.x.st, ost = dir * p.out.st;
  S h = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + i1 * p.h0_s1]) : S(0);
  for (int64_t t = 0; t < p.len; ++t) {
    h = to_compute<S>(a[t * ast]) * h + to_compute<S>(x[t * xst]);
    o[t * ost] = StoreAs<T>::from(h);
  }
}

template <class S>
void scan_sequence_complex(const Problem<S>& p, int64_t i0, int64_t i1) {
  const int64_t dir = p.reverse ? -1 : 1;
  const S* a = seq_start(p.a, i0, i1, p.len, p.reverse);
  const S* x = seq_start(p.x, i0, i1, p.len, p.reverse);
  S* o = seq_start(p.out, i0, i1, p.len, p.reverse);
  const int64_t ast = dir * p.a.st, xst = dir * p.x.st, ost = dir * p.out.st;
  const S* h0 = p.h0 ? p.h0 + i0 * p.h0_s0 + i1 * p.h0_s1 : nullptr;
  S hr = h0 ? h0[0] : S(0), hi = h0 ? h0[1] : S(0);
  const S im_sign = p.conj_a ? S(-1) : S(1);
  for (int64_t t = 0; t < p.len; ++t) {
    const S ar = a[t * ast], ai = im_sign * a[t * ast + 1];
    const S nr = ar * hr - ai * hi + x[t * xst];
    const S ni = ar * hi + ai * hr + x[t * xst + 1];
    hr = nr;
    hi = ni;
    o[t * ost] = nr;
    o[t * ost + 1] = ni;
  }
}

template <class S, class T, bool CPLX>
void run_scalar(const Problem<T>& p) {
  const int64_t rows = p.n0 * p.n1;
#pragma omp parallel for num_threads(threads_for(p.threads, rows, rows * p.len)) \
    schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (CPLX) {
      scan_sequence_complex<S>(p, r / p.n1, r % p.n1);
    } else {
      scan_sequence_real<S, T>(p, r / p.n1, r % p.n1);
    }
  }
}

// ---- time strided, batch dim contiguous: vectors across it -----------------------------

// Complex values as (re, im) lanes of a real vector: a * h = re(a) h + im(a) (-im h, re h).
template <class S> struct PairLanes;
template <> struct PairLanes<float> {
  KK_INLINE static vf8 swap(vf8 v) { return __builtin_shuffle(v, vi8{1, 0, 3, 2, 5, 4, 7, 6}); }
  KK_INLINE static vf8 re(vf8 v) { return __builtin_shuffle(v, vi8{0, 0, 2, 2, 4, 4, 6, 6}); }
  KK_INLINE static vf8 im(vf8 v) { return __builtin_shuffle(v, vi8{1, 1, 3, 3, 5, 5, 7, 7}); }
  static vf8 sign(float s) { return vf8{-s, s, -s, s, -s, s, -s, s}; }
};
template <> struct PairLanes<double> {
  KK_INLINE static vd4 swap(vd4 v) { return __builtin_shuffle(v, vl4{1, 0, 3, 2}); }
  KK_INLINE static vd4 re(vd4 v) { return __builtin_shuffle(v, vl4{0, 0, 2, 2}); }
  KK_INLINE static vd4 im(vd4 v) { return __builtin_shuffle(v, vl4{1, 1, 3, 3}); }
  static vd4 sign(double s) { return vd4{-s, s, -s, s}; }
};

// G vectors of lanes starting at a, x, o (scan-order steps ast, xst, ost); h0: G*W values.
// A_BCAST: one a value for all lanes of a step (a broadcast across the contiguous dim).
template <class S, int G, bool CPLX, bool A_BCAST, class T>
void vertical(const T* a, int64_t ast, const T* x, int64_t xst, T* o, int64_t ost,
              int64_t len, const S* h0, bool conj_a) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  V h[G];
  for (int g = 0; g < G; ++g) h[g] = load_as<S>(h0 + g * W);
  V im_sign{};
  if constexpr (CPLX) im_sign = PairLanes<S>::sign(conj_a ? S(-1) : S(1));
  for (int64_t t = 0; t < len; ++t) {
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const V xv = load_as<S>(x + g * W);
      if constexpr (CPLX) {
        const V av = load_as<S>(a + g * W);
        h[g] = PairLanes<S>::re(av) * h[g] + im_sign * PairLanes<S>::im(av) *
                                                 PairLanes<S>::swap(h[g]) + xv;
      } else if constexpr (A_BCAST) {
        h[g] = Vec<S>::broadcast(to_compute<S>(*a)) * h[g] + xv;
      } else {
        h[g] = load_as<S>(a + g * W) * h[g] + xv;
      }
      store_vec(o + g * W, h[g]);
    }
    a += ast;
    x += xst;
    o += ost;
  }
}

template <class S, class T, bool CPLX, bool A_BCAST>
void run_inner_contiguous(const Problem<T>& p) {
  constexpr int W = Vec<S>::W;
  constexpr int64_t span = int64_t(kGroup) * W;
  constexpr int shift = CPLX ? 1 : 0;  // storage lane c is element c >> shift, part c & 1
  const int64_t width = p.n1 << shift;
  const int64_t chunks = (width + span - 1) / span;
  const int64_t items = p.n0 * chunks;
  const int64_t dir = p.reverse ? -1 : 1;
  const int64_t ast = dir * p.a.st, xst = dir * p.x.st, ost = dir * p.out.st;
#pragma omp parallel for num_threads(threads_for(p.threads, items, p.n0 * p.n1 * p.len)) \
    schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t i0 = item / chunks;
    const int64_t c0 = (item % chunks) * span, c1 = std::min(width, c0 + span);
    alignas(32) S h0[span];
    for (int64_t c = c0; c < c1; ++c)
      h0[c - c0] = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + (c >> shift) * p.h0_s1 +
                                              (c & shift)])
                        : S(0);
    const T* a = seq_start(p.a, i0, 0, p.len, p.reverse) + (A_BCAST ? 0 : c0);
    const T* x = seq_start(p.x, i0, 0, p.len, p.reverse) + c0;
    T* o = seq_start(p.out, i0, 0, p.len, p.reverse) + c0;
    if (c1 - c0 == span) {
      vertical<S, kGroup, CPLX, A_BCAST>(a, ast, x, xst, o, ost, p.len, h0, p.conj_a);
      continue;
    }
    int64_t c = c0;
    for (; c + W <= c1; c += W) {
      const int64_t d = c - c0;
      vertical<S, 1, CPLX, A_BCAST>(a + (A_BCAST ? 0 : d), ast, x + d, xst, o + d, ost, p.len,
                                    h0 + d, p.conj_a);
    }
    for (; c < c1; c += int64_t(1) << shift) {
      if constexpr (CPLX) {
        scan_sequence_complex<S>(p, i0, c >> shift);
      } else {
        scan_sequence_real<S, T>(p, i0, c);
      }
    }
  }
}

// ---- time contiguous: W x W register transposes through an L1 scratch chunk ------------

KK_INLINE void transpose(vf8* r) {
  vf8 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], vi8{0, 8, 1, 9, 4, 12, 5, 13});
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], vi8{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4) {
    for (int k = 0; k < 2; ++k) {
      u[i + 2 * k] = __builtin_shuffle(t[i + k], t[i + k + 2], vi8{0, 1, 8, 9, 4, 5, 12, 13});
      u[i + 2 * k + 1] =
          __builtin_shuffle(t[i + k], t[i + k + 2], vi8{2, 3, 10, 11, 6, 7, 14, 15});
    }
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = __builtin_shuffle(u[i], u[i + 4], vi8{0, 1, 2, 3, 8, 9, 10, 11});
    r[i + 4] = __builtin_shuffle(u[i], u[i + 4], vi8{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

KK_INLINE void transpose(vd4* r) {
  const vd4 t0 = __builtin_shuffle(r[0], r[1], vl4{0, 4, 2, 6});
  const vd4 t1 = __builtin_shuffle(r[0], r[1], vl4{1, 5, 3, 7});
  const vd4 t2 = __builtin_shuffle(r[2], r[3], vl4{0, 4, 2, 6});
  const vd4 t3 = __builtin_shuffle(r[2], r[3], vl4{1, 5, 3, 7});
  r[0] = __builtin_shuffle(t0, t2, vl4{0, 1, 4, 5});
  r[1] = __builtin_shuffle(t1, t3, vl4{0, 1, 4, 5});
  r[2] = __builtin_shuffle(t0, t2, vl4{2, 3, 6, 7});
  r[3] = __builtin_shuffle(t1, t3, vl4{2, 3, 6, 7});
}

// Steps [m0, m0 + c) (memory order) of L rows into scratch s[step][lane]. Rows with unit time
// stride go through transposes; others (a constant along time, st == 0) element by element.
template <class S, int L, class T>
KK_INLINE void gather(const T* const* rows, int64_t st, int64_t m0, int64_t c, S* s) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  int64_t j = 0;
  if (st == 1) {
    for (; j + W <= c; j += W) {
      for (int lb = 0; lb < L; lb += W) {
        V r[W];
        for (int i = 0; i < W; ++i) r[i] = load_as<S>(rows[lb + i] + m0 + j);
        transpose(r);
        for (int i = 0; i < W; ++i) store_vec(s + (j + i) * L + lb, r[i]);
      }
    }
  }
  for (; j < c; ++j)
    for (int l = 0; l < L; ++l) s[j * L + l] = to_compute<S>(rows[l][(m0 + j) * st]);
}

template <class S, int L, class T>
KK_INLINE void scatter(const S* s, T* const* rows, int64_t m0, int64_t c) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  int64_t j = 0;
  for (; j + W <= c; j += W) {
    for (int lb = 0; lb < L; lb += W) {
      V r[W];
      for (int i = 0; i < W; ++i) r[i] = load_as<S>(s + (j + i) * L + lb);
      transpose(r);
      for (int i = 0; i < W; ++i) store_vec(rows[lb + i] + m0 + j, r[i]);
    }
  }
  for (; j < c; ++j)
    for (int l = 0; l < L; ++l) rows[l][m0 + j] = StoreAs<T>::from(s[j * L + l]);
}

// h = a * h + x down the chunk (x's scratch becomes h's), ascending or descending steps.
template <class S, int L>
KK_INLINE void chunk_recurrence(const S* sa, S* sx, int64_t c, bool reverse, VecT<S>* h) {
  constexpr int W = Vec<S>::W;
  for (int64_t k = 0; k < c; ++k) {
    const int64_t j = reverse ? c - 1 - k : k;
#pragma GCC unroll 4
    for (int g = 0; g < L / W; ++g) {
      h[g] = load_as<S>(sa + j * L + g * W) * h[g] + load_as<S>(sx + j * L + g * W);
      store_vec(sx + j * L + g * W, h[g]);
    }
  }
}

template <class S, class T>
void run_time_contiguous(const Problem<T>& p) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  constexpr int L = kGroup * W;
  const int64_t rows = p.n0 * p.n1;
  const int64_t groups = (rows + L - 1) / L;
  const int64_t chunks = (p.len + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(threads_for(p.threads, groups, rows * p.len)) \
    schedule(static)
  for (int64_t grp = 0; grp < groups; ++grp) {
    alignas(32) S sa[kChunk * L];
    alignas(32) S sx[kChunk * L];
    alignas(32) S hs[L];
    const T* ra[L];
    const T* rx[L];
    T* ro[L];
    for (int l = 0; l < L; ++l) {
      // Lanes past the last row repeat the group's first row: same values, same thread.
      const int64_t r = grp * L + l < rows ? grp * L + l : grp * L;
      const int64_t i0 = r / p.n1, i1 = r % p.n1;
      ra[l] = p.a.at(i0, i1);
      rx[l] = p.x.at(i0, i1);
      ro[l] = p.out.at(i0, i1);
      hs[l] = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + i1 * p.h0_s1]) : S(0);
    }
    V h[kGroup];
    for (int g = 0; g < kGroup; ++g) h[g] = load_as<S>(hs + g * W);
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t c = std::min<int64_t>(kChunk, p.len - k * kChunk);
      const int64_t m0 = p.reverse ? p.len - k * kChunk - c : k * kChunk;
      gather<S, L>(ra, p.a.st, m0, c, sa);
      gather<S, L>(rx, 1, m0, c, sx);
      chunk_recurrence<S, L>(sa, sx, c, p.reverse, h);
      scatter<S, L>(sx, ro, m0, c);
    }
  }
}

// ---- dispatch on layout -----------------------------------------------------------------

template <class S, class T, bool CPLX>
void run(const LinearScanArgs& args) {
  const Problem<T> p = make_problem<T>(args);
  constexpr int64_t e = CPLX ? 2 : 1;
  if (!CPLX && p.x.st == 1 && p.out.st == 1 && (p.a.st == 1 || p.a.st == 0))
    return run_time_contiguous<S, T>(p);
  if (p.x.s1 == e && p.out.s1 == e && p.n1 * e >= Vec<S>::W) {
    if (p.a.s1 == e) return run_inner_contiguous<S, T, CPLX, false>(p);
    if (!CPLX && p.a.s1 == 0) return run_inner_contiguous<S, T, CPLX, true>(p);
  }
  run_scalar<S, T, CPLX>(p);
}

}  // namespace linear_scan_detail

void linear_scan_run(const LinearScanArgs& a) {
  using namespace linear_scan_detail;
  if (a.is_complex) {
    if (a.dtype == DType::f64) return run<double, double, true>(a);
    return run<float, float, true>(a);
  }
  switch (a.dtype) {
    case DType::f32: return run<float, float, false>(a);
    case DType::f64: return run<double, double, false>(a);
    case DType::f16: return run<float, f16_bits, false>(a);
    case DType::bf16: return run<float, bf16_bits, false>(a);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
