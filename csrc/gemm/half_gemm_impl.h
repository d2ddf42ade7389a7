// Half GEMM entry for one ISA (half_gemm.cpp, _avx2.cpp, _avx512.cpp): batches, the dtype
// dispatch, and M == 1 (or N == 1): a matrix-vector product, one streaming dot/axpy pass over
// the matrix (memory-bound), instead of the packed core of gemm_core_impl.h.
#pragma once

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/peak.h"
#include "gemm/gemm_core_impl.h"
#if defined(KK_ISA_AVX512)
#include "gemm/gemm_amx_bf16_impl.h"
#include "gemm/gemm_bf16_pairs_impl.h"
#endif

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

// dots[j] = x . column j of B (kCols columns cs apart, each contiguous along k), x converted
// to float once. Two accumulators per column: 2 kCols independent FMA chains, as the FMA
// latency needs, all in registers (the column count is a constant).
template <int kCols, class T>
KK_INLINE void dot_columns(const float* x, const T* b, int64_t cs, int64_t K, float* dots) {
  vf8 s0[kCols], s1[kCols];
  for (int j = 0; j < kCols; ++j) s0[j] = s1[j] = Vec<float>::broadcast(0.0f);
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const vf8 x0 = load_as<float>(x + k), x1 = load_as<float>(x + k + 8);
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      s0[j] += x0 * load_as<float>(b + j * cs + k);
      s1[j] += x1 * load_as<float>(b + j * cs + k + 8);
    }
  }
  for (; k + 8 <= K; k += 8) {
    const vf8 x0 = load_as<float>(x + k);
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) s0[j] += x0 * load_as<float>(b + j * cs + k);
  }
  for (int j = 0; j < kCols; ++j) {
    const vf8 sum = s0[j] + s1[j];
    float d = 0;
    for (int l = 0; l < 8; ++l) d += sum[l];
    for (int64_t t = k; t < K; ++t) d += x[t] * element(b + j * cs + t);
    dots[j] = d;
  }
}

// y[0:N] = x[0:K] @ B: one pass over B, x (converted once) from L1/L2.
template <class T, class TO>
void gemv_one(const T* x, int64_t xs, const T* b, const MatrixView& bv, TO* y, int64_t ys,
              const Bias& bias, const Plan& p) {
  float* xf = thread_buffer<float, kSlotVector>(p.K + 8);
  for (int64_t k = 0; k < p.K; ++k) xf[k] = element(x + k * xs);
  if (bv.rs == 1) {
    // Columns of B contiguous along k: one dot product per output, 8 columns at a time.
    constexpr int kGroup = 8;
    ParallelErrors errors;
#pragma omp parallel for num_threads(p.threads) schedule(static)
    for (int64_t j0 = 0; j0 < p.N; j0 += kGroup) errors.run([&] {
      float dots[kGroup];
      const int64_t cols = std::min<int64_t>(kGroup, p.N - j0);
      if (cols == kGroup)
        dot_columns<kGroup>(xf, b + j0 * bv.cs, bv.cs, p.K, dots);
      else
        for (int64_t j = 0; j < cols; ++j) dot_columns<1>(xf, b + (j0 + j) * bv.cs, 0, p.K, dots + j);
      for (int64_t j = 0; j < cols; ++j)
        y[(j0 + j) * ys] = StoreAs<TO>::from(dots[j] + bias.in_row(j0 + j));
    });
    errors.rethrow();
    return;
  }
  // Rows of B (contiguous or not along n): y += x[k] * B[k, :], a strip of columns per thread.
  constexpr int64_t kStrip = 512;
  ParallelErrors errors;
#pragma omp parallel for num_threads(p.threads) schedule(static)
  for (int64_t j0 = 0; j0 < p.N; j0 += kStrip) errors.run([&] {
    const int64_t cols = std::min(kStrip, p.N - j0);
    float sums[kStrip];
    for (int64_t j = 0; j < cols; ++j) sums[j] = bias.in_row(j0 + j);
    for (int64_t k = 0; k < p.K; ++k) {
      const T* row = b + k * bv.rs + j0 * bv.cs;
      const float xk = xf[k];
      int64_t j = 0;
      if (bv.cs == 1)
        for (; j + 8 <= cols; j += 8)
          store_vec(sums + j, load_as<float>(sums + j) + Vec<float>::broadcast(xk) *
                                                             load_as<float>(row + j));
      for (; j < cols; ++j) sums[j] += xk * element(row + j * bv.cs);
    }
    for (int64_t j = 0; j < cols; ++j) y[(j0 + j) * ys] = StoreAs<TO>::from(sums[j]);
  });
  errors.rethrow();
}

template <class T, class TO> void run_typed(const HalfGemmArgs& g) {
  const T* a = static_cast<const T*>(g.a.p);
  const T* b = static_cast<const T*>(g.b.p);
  TO* c = static_cast<TO*>(g.c);
  const Bias bias = g.bias == nullptr ? Bias{}
                    : g.bias_per_row  ? Bias{g.bias, 1, 0}
                                      : Bias{g.bias, 0, 1};
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const T* ab = a + bi * g.a.bs;
    const T* bb = b + bi * g.b.bs;
    TO* cb = c + bi * g.c_bs;
    if (g.K == 0) {
      for (int64_t i = 0; i < g.M; ++i)
        for (int64_t j = 0; j < g.N; ++j) {
          cb[i * g.c_rs + j * g.c_cs] = StoreAs<TO>::from(bias.at(i, j).in_row(0));
        }
    } else if (g.M == 1) {
      gemv_one(ab, g.a.cs, bb, g.b, cb, g.c_cs, bias, Plan{1, g.N, g.K, g.threads});
    } else if (g.N == 1) {
      // C^T = B^T A^T: the same matrix-vector pass with the roles of A and B swapped.
      const MatrixView at{g.a.p, g.a.bs, g.a.cs, g.a.rs};
      gemv_one(bb, g.b.rs, ab, at, cb, g.c_rs, bias.transposed(), Plan{1, g.M, g.K, g.threads});
    } else {
      const Plan plan{g.M, g.N, g.K, g.threads};
#if defined(KK_ISA_AVX512)
      if constexpr (std::is_same_v<T, bf16_bits>) {
        if (amx_bf16_usable()) {
          gemm_one<AmxBf16Tile>(DenseAmxA<T>{ab, g.a.rs, g.a.cs},
                                DenseAmxB<T>{bb, g.b.rs, g.b.cs}, cb, g.c_rs, g.c_cs, bias,
                                plan);
          continue;
        }
        if (cpu_features().avx512_bf16) {
          if (g.b.rs == 1 && g.a.cs == 1 && g.K % 2 == 0 &&
              linear_weight_rows_route(g.M)) {
            linear_pairs_weight_rows(ab, g.a.rs, bb, g.b.cs, cb, g.c_rs, g.c_cs, bias, g.M, g.N,
                                     g.K, g.threads);
            continue;
          }
          gemm_one<Bf16PairTile>(DensePairsA<T>{ab, g.a.rs, g.a.cs},
                                 DensePairsB<T>{bb, g.b.rs, g.b.cs}, cb, g.c_rs, g.c_cs, bias,
                                 plan);
          continue;
        }
      }
#endif
      gemm_one(DenseA<T>{ab, g.a.rs, g.a.cs}, DenseB<T>{bb, g.b.rs, g.b.cs}, cb, g.c_rs,
               g.c_cs, bias, plan);
    }
  }
}

template <class T> void run_in(const HalfGemmArgs& g) {
  switch (g.out_dtype) {
    case DType::f16: return run_typed<T, f16_bits>(g);
    case DType::bf16: return run_typed<T, bf16_bits>(g);
    default: return run_typed<T, float>(g);
  }
}

// ---- the compute floor ----

// The float tile's inner operation: kAcc accumulators += x_(i mod 2) * y (FMAs of TileVec),
// y reloaded from memory every step; 15 vector registers, so that AVX2's 16 hold them all.
// Returns the flops done (2 per lane).
__attribute__((noinline)) inline double fma_loop(int64_t steps, const float* seeds,
                                                 uint64_t* sink) {
  constexpr int kAcc = 12;
  const TileVec x[2] = {TileVec{} + seeds[0], TileVec{} + seeds[1]};
  TileVec acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = TileVec{};
  for (int64_t s = 0; s < steps; ++s) {
    const TileVec y = load_tile_vec(seeds + kTileLanes * (s & 1));
#pragma GCC unroll 12
    for (int i = 0; i < kAcc; ++i) acc[i] += x[i & 1] * y;
  }
  TileVec all = acc[0];
  for (int i = 1; i < kAcc; ++i) all += acc[i];
  float total = 0;
  for (int l = 0; l < kTileLanes; ++l) total += all[l];
  *sink ^= uint64_t(total != 0.0f);
  return double(steps) * kAcc * kTileLanes * 2;
}

}  // namespace half_gemm_detail

double half_gemm_peak_run(int threads, DType dtype) {
  using namespace half_gemm_detail;
#if defined(KK_ISA_AVX512)
  if (dtype == DType::bf16 && amx_bf16_usable()) {
    // two A and two B tiles of bfloat16 values near 2^-7 (sums stay finite)
    alignas(64) static uint32_t tiles[4 * 256];
    for (uint32_t& w : tiles) w = 0x3c003c00u;
    return measure_peak(threads, [&](int64_t steps, uint64_t* sink) {
      return amx_bf16_loop(steps, tiles, sink);
    });
  }
  if (dtype == DType::bf16 && cpu_features().avx512_bf16) {
    alignas(64) uint32_t seeds[32];
    for (int i = 0; i < 32; ++i) seeds[i] = 0x3c003c00u + uint32_t(i);  // bf16 pairs near 2^-7
    return measure_peak(threads, [&](int64_t steps, uint64_t* sink) {
      return bf16_pairs_loop(steps, seeds, sink);
    });
  }
#endif
  (void)dtype;
  alignas(64) float seeds[2 * kTileLanes];
  for (int i = 0; i < 2 * kTileLanes; ++i) seeds[i] = 1e-3f * float(i + 1);
  return measure_peak(threads, [&](int64_t steps, uint64_t* sink) {
    return fma_loop(steps, seeds, sink);
  });
}

void half_gemm_run(const HalfGemmArgs& g) {
  using namespace half_gemm_detail;
  switch (g.in_dtype) {
    case DType::f16: return run_in<f16_bits>(g);
    case DType::bf16: return run_in<bf16_bits>(g);
    default: return run_in<float>(g);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
