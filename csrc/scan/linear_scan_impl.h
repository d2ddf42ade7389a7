// Linear scan kernels, written once over vec.h's vectors and compiled once per ISA
// (linear_scan.cpp, linear_scan_avx2.cpp, linear_scan_avx512.cpp: 256- or 512-bit). Every path
// reads a and x once and writes h once. Time-contiguous rows: 32 rows at a time (float; 16
// double), W x W blocks transposed in registers into a time-major L1 scratch chunk, the
// recurrence run down the chunk as independent vectors (hiding FMA latency), transposed back
// out. Time strided, batch dim contiguous: each step streams a run of up to 16 KiB of
// contiguous lanes, vectors across them, the state in L1. complex64 with time contiguous moves
// each element as a 64-bit unit through the double transposes. Anything else (and complex128
// with time contiguous): one scalar loop per sequence.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/parallel.h"
#include "common/vec.h"
#include "scan/linear_scan.h"

namespace kernelkit {
namespace KK_ISA {
namespace linear_scan_detail {

// Steps per scratch chunk: a and x chunks of kChunk x 32 floats stay in L1 (16 KiB).
constexpr int kChunk = 64;
// Independent vectors advanced per step: a group spans 32 float (16 double) rows at either
// width, so the scratch and the row streams are the same; 4 (256-bit) or 2 (512-bit) FMA chains
// are more than the chunk's memory traffic leaves time for.
constexpr int kGroup = 32 / Vec<float>::W;
// Lanes of one pass over the steps when time is strided: a row of a dense (n0, len, n1) tensor
// up to 16 KiB of state, so that step t + 1 continues where step t ended (one sequential
// stream per operand, which the hardware prefetcher follows); the state stays in L1.
template <class S> constexpr int64_t kLaneBlock = 16384 / sizeof(S);
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
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads_for(p.threads, rows, rows * p.len)) \
    schedule(static)
  for (int64_t r = 0; r < rows; ++r) errors.run([&] {
    if constexpr (CPLX) {
      scan_sequence_complex<S>(p, r / p.n1, r % p.n1);
    } else {
      scan_sequence_real<S, T>(p, r / p.n1, r % p.n1);
    }
  });
  errors.rethrow();
}

// ---- time strided, batch dim contiguous: vectors across it -----------------------------

// Complex values as (re, im) lanes of a real vector: a * h = re(a) h + im(a) (-im h, re h).
template <class S> struct PairLanes;
#if !defined(KK_VEC_512)
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
#else
template <> struct PairLanes<float> {
  KK_INLINE static vf16 swap(vf16 v) {
    return __builtin_shuffle(v, vi16{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
  }
  KK_INLINE static vf16 re(vf16 v) {
    return __builtin_shuffle(v, vi16{0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14});
  }
  KK_INLINE static vf16 im(vf16 v) {
    return __builtin_shuffle(v, vi16{1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15});
  }
  static vf16 sign(float s) { return vf16{-s, s, -s, s, -s, s, -s, s, -s, s, -s, s, -s, s, -s, s}; }
};
template <> struct PairLanes<double> {
  KK_INLINE static vd8 swap(vd8 v) { return __builtin_shuffle(v, vl8{1, 0, 3, 2, 5, 4, 7, 6}); }
  KK_INLINE static vd8 re(vd8 v) { return __builtin_shuffle(v, vl8{0, 0, 2, 2, 4, 4, 6, 6}); }
  KK_INLINE static vd8 im(vd8 v) { return __builtin_shuffle(v, vl8{1, 1, 3, 3, 5, 5, 7, 7}); }
  static vd8 sign(double s) { return vd8{-s, s, -s, s, -s, s, -s, s}; }
};
#endif

// Lanes [c0, c1) (storage units) of sequence row i0 over every step: each step reads and writes
// one contiguous run per operand (sequential streams, a few pages), the state in an L1 array.
// A_BCAST: one a value per step for all lanes (a broadcast across the contiguous dim).
template <class S, class T, bool CPLX, bool A_BCAST>
void lane_block(const Problem<T>& p, int64_t i0, int64_t c0, int64_t c1) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  constexpr int shift = CPLX ? 1 : 0;  // storage lane c is element c >> shift, part c & 1
  alignas(64) S h[kLaneBlock<S>];
  const int64_t n = c1 - c0, nv = n / W * W;
  for (int64_t c = 0; c < n; ++c) {
    const int64_t lane = c0 + c;
    h[c] = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + (lane >> shift) * p.h0_s1 + (lane & shift)])
                : S(0);
  }
  const int64_t dir = p.reverse ? -1 : 1;
  const int64_t ast = dir * p.a.st, xst = dir * p.x.st, ost = dir * p.out.st;
  const T* a = seq_start(p.a, i0, 0, p.len, p.reverse) + (A_BCAST ? 0 : c0);
  const T* x = seq_start(p.x, i0, 0, p.len, p.reverse) + c0;
  T* o = seq_start(p.out, i0, 0, p.len, p.reverse) + c0;
  V im_sign{};
  if constexpr (CPLX) im_sign = PairLanes<S>::sign(p.conj_a ? S(-1) : S(1));
  const S s_sign = p.conj_a ? S(-1) : S(1);
  for (int64_t t = 0; t < p.len; ++t, a += ast, x += xst, o += ost) {
    const S a_one = A_BCAST ? to_compute<S>(*a) : S(0);
    const V a_all = Vec<S>::broadcast(a_one);
    for (int64_t c = 0; c < nv; c += W) {
      V hv = load_as<S>(h + c);
      const V xv = load_as<S>(x + c);
      if constexpr (CPLX) {
        const V av = load_as<S>(a + c);
        hv = PairLanes<S>::re(av) * hv + im_sign * PairLanes<S>::im(av) * PairLanes<S>::swap(hv) +
             xv;
      } else {
        hv = (A_BCAST ? a_all : load_as<S>(a + c)) * hv + xv;
      }
      store_vec(h + c, hv);
      store_vec(o + c, hv);
    }
    for (int64_t c = nv; c < n; c += int64_t(1) << shift) {
      if constexpr (CPLX) {
        const S ar = a[c], ai = s_sign * a[c + 1], hr = h[c], hi = h[c + 1];
        h[c] = ar * hr - ai * hi + x[c];
        h[c + 1] = ar * hi + ai * hr + x[c + 1];
        o[c] = h[c];
        o[c + 1] = h[c + 1];
      } else {
        h[c] = (A_BCAST ? a_one : to_compute<S>(a[c])) * h[c] + to_compute<S>(x[c]);
        o[c] = StoreAs<T>::from(h[c]);
      }
    }
  }
}

template <class S, class T, bool CPLX, bool A_BCAST>
void run_inner_contiguous(const Problem<T>& p) {
  constexpr int64_t W = Vec<S>::W;
  const int64_t width = p.n1 << (CPLX ? 1 : 0);
  // Few rows: cut each row's lanes into pieces so that every thread has one.
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
    lane_block<S, T, CPLX, A_BCAST>(p, i0, c0, std::min(width, c0 + piece));
  });
  errors.rethrow();
}

// ---- time contiguous: W x W register transposes through an L1 scratch chunk ------------

// A W x W block is transposed as two half-blocks: rows i and i + W/2 share a vector (one in
// each 128-bit lane), so the in-lane transposes below do the rest. Rows of the compute type are
// loaded and stored in such halves (the lane crossing is then done by the load and store units,
// not the shuffle port: 16 shuffles per 8 x 8 block instead of 24); 16-bit rows are converted
// in whole vectors and cross lanes with one more shuffle stage.

// In each 128-bit lane, the 4 x 4 (float) or 2 x 2 (double) transpose of r[0 .. W/2).
KK_INLINE void lane_transpose(vf8* r) {
  const vf8 t0 = __builtin_shuffle(r[0], r[1], vi8{0, 8, 1, 9, 4, 12, 5, 13});
  const vf8 t1 = __builtin_shuffle(r[0], r[1], vi8{2, 10, 3, 11, 6, 14, 7, 15});
  const vf8 t2 = __builtin_shuffle(r[2], r[3], vi8{0, 8, 1, 9, 4, 12, 5, 13});
  const vf8 t3 = __builtin_shuffle(r[2], r[3], vi8{2, 10, 3, 11, 6, 14, 7, 15});
  r[0] = __builtin_shuffle(t0, t2, vi8{0, 1, 8, 9, 4, 5, 12, 13});
  r[1] = __builtin_shuffle(t0, t2, vi8{2, 3, 10, 11, 6, 7, 14, 15});
  r[2] = __builtin_shuffle(t1, t3, vi8{0, 1, 8, 9, 4, 5, 12, 13});
  r[3] = __builtin_shuffle(t1, t3, vi8{2, 3, 10, 11, 6, 7, 14, 15});
}

KK_INLINE void lane_transpose(vd4* r) {
  const vd4 t0 = __builtin_shuffle(r[0], r[1], vl4{0, 4, 2, 6});
  r[1] = __builtin_shuffle(r[0], r[1], vl4{1, 5, 3, 7});
  r[0] = t0;
}

// Swaps the high lane of r[i] with the low lane of r[i + W/2].
KK_INLINE void cross_lanes(vf8* r) {
  for (int i = 0; i < 4; ++i) {
    const vf8 lo = __builtin_shuffle(r[i], r[i + 4], vi8{0, 1, 2, 3, 8, 9, 10, 11});
    r[i + 4] = __builtin_shuffle(r[i], r[i + 4], vi8{4, 5, 6, 7, 12, 13, 14, 15});
    r[i] = lo;
  }
}

KK_INLINE void cross_lanes(vd4* r) {
  for (int i = 0; i < 2; ++i) {
    const vd4 lo = __builtin_shuffle(r[i], r[i + 2], vl4{0, 1, 4, 5});
    r[i + 2] = __builtin_shuffle(r[i], r[i + 2], vl4{2, 3, 6, 7});
    r[i] = lo;
  }
}

// One vector from two 16-byte runs (low lane from lo), and back. On AVX2 an insert from memory
// and an extract to memory (no shuffle-port work, no round trip through the stack).
KK_INLINE vf8 load_halves(const float* lo, const float* hi) {
#if defined(KK_ISA_AVX2)
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
#else
  vf8 v;
  std::memcpy(&v, lo, 16);
  std::memcpy(reinterpret_cast<char*>(&v) + 16, hi, 16);
  return v;
#endif
}

KK_INLINE vd4 load_halves(const double* lo, const double* hi) {
#if defined(KK_ISA_AVX2)
  return _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(lo)), _mm_loadu_pd(hi), 1);
#else
  vd4 v;
  std::memcpy(&v, lo, 16);
  std::memcpy(reinterpret_cast<char*>(&v) + 16, hi, 16);
  return v;
#endif
}

KK_INLINE void store_halves(float* lo, float* hi, vf8 v) {
#if defined(KK_ISA_AVX2)
  _mm_storeu_ps(lo, _mm256_castps256_ps128(v));
  _mm_storeu_ps(hi, _mm256_extractf128_ps(v, 1));
#else
  std::memcpy(lo, &v, 16);
  std::memcpy(hi, reinterpret_cast<const char*>(&v) + 16, 16);
#endif
}

KK_INLINE void store_halves(double* lo, double* hi, vd4 v) {
#if defined(KK_ISA_AVX2)
  _mm_storeu_pd(lo, _mm256_castpd256_pd128(v));
  _mm_storeu_pd(hi, _mm256_extractf128_pd(v, 1));
#else
  std::memcpy(lo, &v, 16);
  std::memcpy(hi, reinterpret_cast<const char*>(&v) + 16, 16);
#endif
}

#if !defined(KK_VEC_512)
// One vector from 16-byte runs of rows i and i + P (steps j ..), and back.
KK_INLINE vf8 load_runs(const float* const* rows, int i, int64_t j) {
  return load_halves(rows[i] + j, rows[i + 4] + j);
}
KK_INLINE vd4 load_runs(const double* const* rows, int i, int64_t j) {
  return load_halves(rows[i] + j, rows[i + 2] + j);
}
KK_INLINE void store_runs(float* const* rows, int i, int64_t j, vf8 v) {
  store_halves(rows[i] + j, rows[i + 4] + j, v);
}
KK_INLINE void store_runs(double* const* rows, int i, int64_t j, vd4 v) {
  store_halves(rows[i] + j, rows[i + 2] + j, v);
}
#else
// 512 bits: four 128-bit lanes, so a 16 x 16 (float) or 8 x 8 (double) block is four rounds of
// the same in-lane transposes after a transpose of the lanes themselves. Rows move as whole
// 64-byte lines (not as 16-byte runs, as at 256 bits): a block's 16 rows, often a power of two
// apart, share one L1 set, more than its ways, and a line written in four pieces would be
// evicted and fetched again between them (measured: 1.85x slower in L2).
KK_INLINE void lane_transpose(vf16* r) {
  constexpr vi16 lo = {0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29};
  constexpr vi16 hi = {2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31};
  constexpr vi16 lo2 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  constexpr vi16 hi2 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
  const vf16 t0 = __builtin_shuffle(r[0], r[1], lo), t1 = __builtin_shuffle(r[0], r[1], hi);
  const vf16 t2 = __builtin_shuffle(r[2], r[3], lo), t3 = __builtin_shuffle(r[2], r[3], hi);
  r[0] = __builtin_shuffle(t0, t2, lo2);
  r[1] = __builtin_shuffle(t0, t2, hi2);
  r[2] = __builtin_shuffle(t1, t3, lo2);
  r[3] = __builtin_shuffle(t1, t3, hi2);
}

KK_INLINE void lane_transpose(vd8* r) {
  const vd8 t0 = __builtin_shuffle(r[0], r[1], vl8{0, 8, 2, 10, 4, 12, 6, 14});
  r[1] = __builtin_shuffle(r[0], r[1], vl8{1, 9, 3, 11, 5, 13, 7, 15});
  r[0] = t0;
}

// The 4 x 4 transpose of the 128-bit lanes of a, b, c, d (lane q of the g-th output is lane g
// of the q-th input).
KK_INLINE void transpose_lanes(vf16& a, vf16& b, vf16& c, vf16& d) {
  constexpr vi16 first = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  constexpr vi16 second = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  constexpr vi16 even = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  constexpr vi16 odd = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  const vf16 t0 = __builtin_shuffle(a, b, first), t1 = __builtin_shuffle(a, b, second);
  const vf16 t2 = __builtin_shuffle(c, d, first), t3 = __builtin_shuffle(c, d, second);
  a = __builtin_shuffle(t0, t2, even);
  b = __builtin_shuffle(t0, t2, odd);
  c = __builtin_shuffle(t1, t3, even);
  d = __builtin_shuffle(t1, t3, odd);
}

// Lane q of r[g P + i] becomes lane g of r[i + P q] (an involution): full rows in, the layout
// of 16-byte runs out.
KK_INLINE void cross_lanes(vf16* r) {
  for (int i = 0; i < 4; ++i) transpose_lanes(r[i], r[i + 4], r[i + 8], r[i + 12]);
}

KK_INLINE void cross_lanes(vd8* r) {
  for (int i = 0; i < 2; ++i) {
    vf16 v[4] = {vf16(r[i]), vf16(r[i + 2]), vf16(r[i + 4]), vf16(r[i + 6])};
    transpose_lanes(v[0], v[1], v[2], v[3]);
    for (int q = 0; q < 4; ++q) r[i + 2 * q] = vd8(v[q]);
  }
}

#endif  // !KK_VEC_512

// bfloat16 rows, 16 steps at a time: a bf16 is the top half of a float, so the 32-bit words of a
// row give its even-indexed steps by a shift and its odd-indexed ones by a mask (no conversion
// shuffles); the in-lane transposes then make step vectors of each.
KK_INLINE vu8 load_halves(const bf16_bits* lo, const bf16_bits* hi) {
  vu8 w;
#if defined(KK_ISA_AVX2)
  const __m256i v = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
  std::memcpy(&w, &v, sizeof w);
#else
  std::memcpy(&w, lo, 16);
  std::memcpy(reinterpret_cast<char*>(&w) + 16, hi, 16);
#endif
  return w;
}

KK_INLINE void store_halves(bf16_bits* lo, bf16_bits* hi, vu8 w) {
#if defined(KK_ISA_AVX2)
  __m256i v;
  std::memcpy(&v, &w, sizeof v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(lo), _mm256_castsi256_si128(v));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hi), _mm256_extracti128_si256(v, 1));
#else
  std::memcpy(lo, &w, 16);
  std::memcpy(hi, reinterpret_cast<const char*>(&w) + 16, 16);
#endif
}

KK_INLINE vf8 bits_as_floats(vu8 w) {
  vf8 v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}

// Steps j .. j + 16 of 8 bfloat16 rows as 16 step vectors.
KK_INLINE void load_block_pairs(const bf16_bits* const* rows, int64_t j, vf8* r) {
  for (int half = 0; half < 2; ++half) {
    vf8 even[4], odd[4];
    for (int i = 0; i < 4; ++i) {
      const vu8 w = load_halves(rows[i] + j + 8 * half, rows[i + 4] + j + 8 * half);
      even[i] = bits_as_floats(w << 16);
      odd[i] = bits_as_floats(w & 0xffff0000u);
    }
    lane_transpose(even);
    lane_transpose(odd);
    for (int k = 0; k < 4; ++k) {
      r[8 * half + 2 * k] = even[k];
      r[8 * half + 2 * k + 1] = odd[k];
    }
  }
}

// The inverse, rounding to nearest even (bf16_round_high: its NaN precondition holds, the
// values being computed from bfloat16 inputs).
KK_INLINE void store_block_pairs(const vf8* r, bf16_bits* const* rows, int64_t j) {
  for (int half = 0; half < 2; ++half) {
    vf8 even[4], odd[4];
    for (int k = 0; k < 4; ++k) {
      even[k] = r[8 * half + 2 * k];
      odd[k] = r[8 * half + 2 * k + 1];
    }
    lane_transpose(even);
    lane_transpose(odd);
    for (int i = 0; i < 4; ++i) {
      const vu8 w = (bf16_round_high(even[i]) >> 16) | (bf16_round_high(odd[i]) & 0xffff0000u);
      store_halves(rows[i] + j + 8 * half, rows[i + 4] + j + 8 * half, w);
    }
  }
}

// Elements of the compute type per 128-bit lane: the in-lane transposes work on P x P blocks.
template <class S> constexpr int kLaneElems = int(16 / sizeof(S));

// 16-byte runs of the compute type per row (256 bits), or whole rows converted by load_as.
template <class S, class T>
constexpr bool kRowRuns = std::is_same<S, T>::value && sizeof(VecT<S>) == 32;

// W rows (steps j .. j + W of each) as W vectors, one step each. r[g P + i] first holds, in
// lane q, steps j + g P .. j + g P + P of row i + P q; the in-lane transposes of each P vectors
// then leave step j + g P + s of every row in r[g P + s].
template <class S, class T>
KK_INLINE void load_block(const T* const* rows, int64_t j, VecT<S>* r) {
  constexpr int W = Vec<S>::W, P = kLaneElems<S>, Q = W / P;
  if constexpr (kRowRuns<S, T>) {
    for (int g = 0; g < Q; ++g)
      for (int i = 0; i < P; ++i) r[g * P + i] = load_runs(rows, i, j + g * P);
  } else {
    for (int i = 0; i < W; ++i) r[i] = load_as<S>(rows[i] + j);
    cross_lanes(r);
  }
  for (int g = 0; g < Q; ++g) lane_transpose(r + g * P);
}

// The inverse of load_block: W vectors of one step each into steps j .. j + W of W rows.
template <class S, class T>
KK_INLINE void store_block(VecT<S>* r, T* const* rows, int64_t j) {
  constexpr int W = Vec<S>::W, P = kLaneElems<S>, Q = W / P;
  for (int g = 0; g < Q; ++g) lane_transpose(r + g * P);
  if constexpr (kRowRuns<S, T>) {
    for (int g = 0; g < Q; ++g)
      for (int i = 0; i < P; ++i) store_runs(rows, i, j + g * P, r[g * P + i]);
  } else {
    cross_lanes(r);
    for (int i = 0; i < W; ++i) store_vec(rows[i] + j, r[i]);
  }
}

// Elements [next, next + N) of W rows (next < 0: none), one request per cache line: 3L row
// streams are more than the hardware prefetcher follows. Issued row block by row block while
// the current chunk is moved, not in one burst (which would fill every line-fill buffer).
// gather and scatter walk each chunk's blocks toward the next chunk (downwards when it lies
// below): the hardware prefetcher then sees the direction of travel.
template <int W, int64_t N = kChunk, class T>
KK_INLINE void prefetch_rows(const T* const* rows, int64_t next, bool for_write) {
  if (next < 0) return;
  constexpr int64_t per_line = 64 / sizeof(T);
  for (int i = 0; i < W; ++i)
    for (int64_t j = 0; j < N; j += per_line) {
      if (for_write) {
        __builtin_prefetch(rows[i] + next + j, 1);
      } else {
        __builtin_prefetch(rows[i] + next + j, 0);
      }
    }
}

// Steps per block transpose: W, or 16 for bfloat16 rows at 256 bits (one 32-byte run of each
// of 8 rows). At 512 bits bfloat16 rows are converted by load_as and go through the float
// transposes: measured in L2, the same pairs trick over 16 rows of 32 steps was 10% slower
// (32 live vectors per block spill).
template <class T, int W>
constexpr int kBlockSteps = std::is_same<T, bf16_bits>::value && W == 8 ? 16 : W;

// Steps [m0, m0 + c) (memory order) of L rows into scratch s[step][lane]. Rows with unit time
// stride go through transposes; others (a constant along time, st == 0) element by element.
template <class S, int L, class T>
KK_INLINE void gather(const T* const* rows, int64_t st, int64_t m0, int64_t c, S* s,
                      int64_t next) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  constexpr int B = kBlockSteps<T, W>;
  int64_t j = 0;
  if (st == 1) {
    // Row block by row block: its lines are used up before the next rows (often in the same
    // L1 sets, rows being a power of two apart) evict them.
    j = c / B * B;
    const bool down = next >= 0 && next < m0;
    for (int lb = 0; lb < L; lb += W) {
      prefetch_rows<W>(rows + lb, next, false);
      for (int64_t b = 0; b < j; b += B) {
        const int64_t k = down ? j - B - b : b;
        V r[B];
        if constexpr (B != W) {
          load_block_pairs(rows + lb, m0 + k, r);
        } else {
          load_block<S>(rows + lb, m0 + k, r);
        }
        for (int i = 0; i < B; ++i) store_vec(s + (k + i) * L + lb, r[i]);
      }
    }
  }
  for (; j < c; ++j)
    for (int l = 0; l < L; ++l) {
      T v;  // (copied as bytes: complex64 rows are read as 64-bit units)
      std::memcpy(&v, rows[l] + (m0 + j) * st, sizeof v);
      s[j * L + l] = to_compute<S>(v);
    }
}

template <class S, int L, class T>
KK_INLINE void scatter(const S* s, T* const* rows, int64_t m0, int64_t c, int64_t next) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  constexpr int B = kBlockSteps<T, W>;
  const int64_t full = c / B * B;
  const bool down = next >= 0 && next < m0;
  for (int lb = 0; lb < L; lb += W) {
    prefetch_rows<W>(rows + lb, next, true);
    for (int64_t b = 0; b < full; b += B) {
      const int64_t j = down ? full - B - b : b;
      V r[B];
      for (int i = 0; i < B; ++i) r[i] = load_as<S>(s + (j + i) * L + lb);
      if constexpr (B != W) {
        store_block_pairs(r, rows + lb, m0 + j);
      } else {
        store_block<S>(r, rows + lb, m0 + j);
      }
    }
  }
  for (int64_t j = full; j < c; ++j)
    for (int l = 0; l < L; ++l) {
      const T v = StoreAs<T>::from(s[j * L + l]);
      std::memcpy(rows[l] + m0 + j, &v, sizeof v);
    }
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

// The same down a chunk of complex64 lanes, each a 64-bit unit of the scratch.
template <int L>
KK_INLINE void chunk_recurrence_complex(const double* sa, double* sx, int64_t c, bool reverse,
                                        VecT<float>* h, VecT<float> im_sign) {
  constexpr int WE = Vec<double>::W;  // elements per vector
  for (int64_t k = 0; k < c; ++k) {
    const int64_t j = reverse ? c - 1 - k : k;
#pragma GCC unroll 4
    for (int g = 0; g < L / WE; ++g) {
      const float* a = reinterpret_cast<const float*>(sa + j * L + g * WE);
      float* x = reinterpret_cast<float*>(sx + j * L + g * WE);
      const VecT<float> av = load_as<float>(a);
      h[g] = PairLanes<float>::re(av) * h[g] +
             im_sign * PairLanes<float>::im(av) * PairLanes<float>::swap(h[g]) +
             load_as<float>(x);
      store_vec(x, h[g]);
    }
  }
}

// CPLX (complex64 only): an element is a 64-bit unit, moved by the double transposes (moves of
// bits, no arithmetic) and multiplied as (re, im) pairs of floats.
template <class S, class T, bool CPLX>
void run_time_contiguous(const Problem<T>& p) {
  using U = std::conditional_t<CPLX, double, T>;  // storage of one element
  using C = std::conditional_t<CPLX, double, S>;  // scratch of one element
  constexpr int E = CPLX ? 2 : 1;                 // storage units of T per element
  constexpr int L = kGroup * Vec<C>::W;           // lanes (rows) of a group
  const int64_t rows = p.n0 * p.n1;
  const int64_t groups = (rows + L - 1) / L;
  const int64_t chunks = (p.len + kChunk - 1) / kChunk;
  const int64_t a_st = p.a.st / E;
  VecT<S> im_sign{};
  if constexpr (CPLX) im_sign = PairLanes<S>::sign(p.conj_a ? S(-1) : S(1));
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads_for(p.threads, groups, rows * p.len)) \
    schedule(static)
  for (int64_t grp = 0; grp < groups; ++grp) errors.run([&] {
    alignas(64) C sa[kChunk * L];
    alignas(64) C sx[kChunk * L];
    alignas(64) S hs[L * E];
    const U* ra[L];
    const U* rx[L];
    U* ro[L];
    for (int l = 0; l < L; ++l) {
      // Lanes past the last row repeat the group's first row: same values, same thread.
      const int64_t r = grp * L + l < rows ? grp * L + l : grp * L;
      const int64_t i0 = r / p.n1, i1 = r % p.n1;
      ra[l] = reinterpret_cast<const U*>(p.a.at(i0, i1));
      rx[l] = reinterpret_cast<const U*>(p.x.at(i0, i1));
      ro[l] = reinterpret_cast<U*>(p.out.at(i0, i1));
      for (int e = 0; e < E; ++e)
        hs[l * E + e] = p.h0 ? to_compute<S>(p.h0[i0 * p.h0_s0 + i1 * p.h0_s1 + e]) : S(0);
    }
    VecT<S> h[kGroup];
    for (int g = 0; g < kGroup; ++g) h[g] = load_as<S>(hs + g * Vec<S>::W);
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t c = std::min<int64_t>(kChunk, p.len - k * kChunk);
      const int64_t m0 = p.reverse ? p.len - k * kChunk - c : k * kChunk;
      // The next chunk's start (prefetched meanwhile), -1 after the last; a partial next chunk
      // is prefetched whole, a few lines past its rows' ends: prefetches do not fault.
      const int64_t after = p.reverse ? m0 - kChunk : m0 + kChunk;
      const int64_t next = k + 1 < chunks ? std::max<int64_t>(after, 0) : -1;
      gather<C, L>(ra, a_st, m0, c, sa, a_st == 0 ? -1 : next);
      gather<C, L>(rx, 1, m0, c, sx, next);
      if constexpr (CPLX) {
        chunk_recurrence_complex<L>(sa, sx, c, p.reverse, h, im_sign);
      } else {
        chunk_recurrence<S, L>(sa, sx, c, p.reverse, h);
      }
      scatter<C, L>(sx, ro, m0, c, next);
    }
  });
  errors.rethrow();
}

// ---- dispatch on layout -----------------------------------------------------------------

template <class S, class T, bool CPLX>
void run(const LinearScanArgs& args) {
  const Problem<T> p = make_problem<T>(args);
  constexpr int64_t e = CPLX ? 2 : 1;
  constexpr bool kTransposes = !CPLX || std::is_same<S, float>::value;  // not complex128
  if (kTransposes && p.x.st == e && p.out.st == e && (p.a.st == e || p.a.st == 0))
    return run_time_contiguous<S, T, CPLX && kTransposes>(p);
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
