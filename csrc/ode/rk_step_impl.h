// Kernels of rk_step.h over vec.h's vectors, compiled once per ISA (KK_ISA names the
// namespace). A stage input reads its base and the stages it weights once and writes one
// value; a step's end reads y0, the weighted stages (and y1 when it is not written) once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/parallel.h"
#include "common/vec.h"
#include "common/vec_math.h"
#include "ode/rk_step.h"

namespace kernelkit {
namespace KK_ISA {

namespace rk_detail {

// Elements per reduction chunk: partial sums are per chunk, added in chunk order afterwards.
constexpr int64_t kChunk = 8192;
// Below this many element reads per thread the OpenMP fork costs more than it saves.
constexpr int64_t kReadsPerThread = 1 << 18;

inline int threads_for(int threads, int64_t reads, int64_t chunks) {
  const int64_t useful = std::max<int64_t>(1, reads / kReadsPerThread);
  return int(std::max<int64_t>(1, std::min<int64_t>({int64_t(threads), useful, chunks})));
}

template <class S> struct Weights {
  VecT<S> v[kRkMaxSources];
  S s[kRkMaxSources];
  Weights(const double* w, int count) {
    for (int j = 0; j < count; ++j) {
      s[j] = S(w[j]);
      v[j] = Vec<S>::broadcast(s[j]);
    }
  }
};

// sum_{j >= first} w[j] * src[j] at lanes [i, i + W).
template <class S>
KK_INLINE VecT<S> weighted_sum(const S* const* src, const Weights<S>& w, int first, int count,
                               int64_t i) {
  VecT<S> acc = w.v[first] * load_as<S>(src[first] + i);
  for (int j = first + 1; j < count; ++j) acc = fmadd(w.v[j], load_as<S>(src[j] + i), acc);
  return acc;
}

template <class S>
inline S weighted_sum_scalar(const S* const* src, const Weights<S>& w, int first, int count,
                             int64_t i) {
  S acc = w.s[first] * src[first][i];
  for (int j = first + 1; j < count; ++j) acc = std::fma(w.s[j], src[j][i], acc);
  return acc;
}

template <class S> void combine_range(const RkCombineArgs& a, int64_t begin, int64_t end) {
  constexpr int W = Vec<S>::W;
  S* out = static_cast<S*>(a.out);
  const S* const* src = reinterpret_cast<const S* const*>(a.srcs);
  const Weights<S> w(a.w, a.nsrc);
  int64_t i = begin;
  if (a.nsrc == 1) {
    for (; i + W <= end; i += W) store_vec(out + i, w.v[0] * load_as<S>(src[0] + i));
    for (; i < end; ++i) out[i] = w.s[0] * src[0][i];
    return;
  }
  for (; i + W <= end; i += W) {
    const VecT<S> inc = weighted_sum(src, w, 1, a.nsrc, i);
    store_vec(out + i, fmadd(w.v[0], load_as<S>(src[0] + i), inc));
  }
  for (; i < end; ++i)
    out[i] = std::fma(w.s[0], src[0][i], weighted_sum_scalar(src, w, 1, a.nsrc, i));
}

template <class S> void combine(const RkCombineArgs& a) {
  const int64_t chunks = (a.n + kChunk - 1) / kChunk;
  const int threads = threads_for(a.threads, a.n * (a.nsrc + 1), chunks);
  if (threads == 1) return combine_range<S>(a, 0, a.n);
  ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < chunks; ++c)
    errors.run([&] { combine_range<S>(a, c * kChunk, std::min(a.n, (c + 1) * kChunk)); });
  errors.rethrow();
}

// Lane sums of one chunk, [begin, end), of the step's end; returns (sum of squared scaled
// errors, sum of 0 * y1).
template <class S>
void step_end_chunk(const RkStepEndArgs& a, const Weights<S>& b, const Weights<S>& e,
                    int64_t begin, int64_t end, double* sums) {
  using V = VecT<S>;
  constexpr int W = Vec<S>::W;
  const S* y0 = static_cast<const S*>(a.y0);
  S* y1 = static_cast<S*>(a.y1);
  const S* const* ks = reinterpret_cast<const S* const*>(a.ks);
  const S rtol = S(a.rtol), atol = S(a.atol);
  const V vrtol = Vec<S>::broadcast(rtol), vatol = Vec<S>::broadcast(atol);
  V sq = V{}, fin = V{};
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    const V base = load_as<S>(y0 + i);
    V sol;
    if (a.write_y1) {
      sol = base + weighted_sum(ks, b, 0, a.nk, i);
      store_vec(y1 + i, sol);
    } else {
      sol = load_as<S>(y1 + i);
    }
    const V err = weighted_sum(ks, e, 0, a.nk, i);
    V ab = base < 0 ? -base : base;
    V as = sol < 0 ? -sol : sol;
    const V big = ab > as ? ab : as;
    const V r = err / fmadd(vrtol, big, vatol);
    sq = fmadd(r, r, sq);
    fin = fmadd(sol, V{}, fin);
  }
  S sq_s = 0, fin_s = 0;
  for (; i < end; ++i) {
    S sol;
    if (a.write_y1) {
      sol = y0[i] + weighted_sum_scalar(ks, b, 0, a.nk, i);
      y1[i] = sol;
    } else {
      sol = y1[i];
    }
    const S err = weighted_sum_scalar(ks, e, 0, a.nk, i);
    const S r = err / std::fma(rtol, std::max(std::fabs(y0[i]), std::fabs(sol)), atol);
    sq_s = std::fma(r, r, sq_s);
    fin_s += sol * S(0);
  }
  double total_sq = sq_s, total_fin = fin_s;
  for (int l = 0; l < W; ++l) {
    total_sq += sq[l];
    total_fin += fin[l];
  }
  sums[0] = total_sq;
  sums[1] = total_fin;
}

template <class S> void step_end(const RkStepEndArgs& a) {
  // chunks never straddle a segment: chunk c of segment s covers kChunk values of s
  std::vector<int64_t> first_chunk(a.nseg + 1, 0);
  int64_t seg_start = 0;
  for (int s = 0; s < a.nseg; ++s) {
    first_chunk[s + 1] = first_chunk[s] + (a.seg_end[s] - seg_start + kChunk - 1) / kChunk;
    seg_start = a.seg_end[s];
  }
  const int64_t chunks = first_chunk[a.nseg];
  std::vector<double> sums(2 * chunks);
  const Weights<S> b(a.b, a.write_y1 ? a.nk : 0), e(a.e, a.nk);
  auto run_chunk = [&](int64_t c) {
    const int s = int(std::upper_bound(first_chunk.begin(), first_chunk.end(), c) -
                      first_chunk.begin()) - 1;
    const int64_t start = s == 0 ? 0 : a.seg_end[s - 1];
    const int64_t begin = start + (c - first_chunk[s]) * kChunk;
    step_end_chunk<S>(a, b, e, begin, std::min(a.seg_end[s], begin + kChunk), &sums[2 * c]);
  };
  const int threads = threads_for(a.threads, a.n * (a.nk + 2), chunks);
  if (threads == 1) {
    for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
  } else {
    ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) errors.run([&] { run_chunk(c); });
    errors.rethrow();
  }
  for (int s = 0; s < a.nseg; ++s) {
    double sq = 0, fin = 0;
    for (int64_t c = first_chunk[s]; c < first_chunk[s + 1]; ++c) {
      sq += sums[2 * c];
      fin += sums[2 * c + 1];
    }
    a.stats[2 * s] = sq;
    a.stats[2 * s + 1] = fin;
  }
}

}  // namespace rk_detail

void rk_combine_run(const RkCombineArgs& a) {
  if (a.dtype == DType::f64) return rk_detail::combine<double>(a);
  rk_detail::combine<float>(a);
}

void rk_step_end_run(const RkStepEndArgs& a) {
  if (a.dtype == DType::f64) return rk_detail::step_end<double>(a);
  rk_detail::step_end<float>(a);
}

}  // namespace KK_ISA
}  // namespace kernelkit
