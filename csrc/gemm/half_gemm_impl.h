// Half GEMM, written once over 256-bit vectors and compiled once per ISA (half_gemm.cpp,
// half_gemm_avx2.cpp). Goto/BLIS loops: per (KC x NC) panel of B, packed once as float32
// slivers of NR columns; per (MC x KC) block of A, packed per thread as slivers of MR rows;
// a 6x16 register-tile micro-kernel (12 FMA accumulators) over them. Operands are converted
// to float32 while packing (F16C / a shift for bfloat16), so each element of A is converted
// N / NC times and each of B once; sums accumulate in a float32 block of C (rows padded to MR,
// columns to NR, so no tile has an edge), converted to the output dtype once at the end.
// M == 1 (or N == 1) is a matrix-vector product: a streaming dot/axpy pass, memory-bound.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/scratch.h"
#include "common/vec.h"
#include "common/vec_transpose.h"
#include "gemm/half_gemm.h"

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

constexpr int MR = 6;       // rows of the register tile: 6 broadcasts of A per step
constexpr int NR = 16;      // columns: 2 vectors of B per step; 12 accumulators in all
constexpr int64_t KC = 256;  // a KC x NR sliver of B (16 KiB) stays in L1
constexpr int64_t MC = 144;  // an MC x KC block of A (144 KiB) stays in L2
constexpr int64_t NC = 2048; // a KC x NC panel of B (2 MiB) is shared by the threads
// The float32 accumulator block of C: MB x NC floats (8 MiB) at most.
constexpr int64_t kAccumulatorFloats = int64_t(2) << 20;
// thread_buffer slots (distinct from the ones other kernels keep).
constexpr int kSlotAccumulator = 10, kSlotPackedB = 11, kSlotPackedA = 12, kSlotVector = 13;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <class T> KK_INLINE float element(const T* p) { return to_compute<float>(*p); }

// ---- packing: float32 slivers, k-major, zero-padded to full tiles ----

// B[0:kc, 0:cols] (cols <= NR) into out[k * NR + j].
template <class T>
void pack_b_sliver(const T* b, int64_t rs, int64_t cs, int64_t kc, int64_t cols, float* out) {
  if (cols == NR && cs == 1) {
    for (int64_t k = 0; k < kc; ++k) {
      store_vec(out + k * NR, load_as<float>(b + k * rs));
      store_vec(out + k * NR + 8, load_as<float>(b + k * rs + 8));
    }
    return;
  }
  int64_t k = 0;
  if (cols == NR && rs == 1) {
    // Columns contiguous along k (e.g. a weight used transposed): 8 x 8 register transposes.
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < 2; ++h) {
        vf8 r[8];
        for (int j = 0; j < 8; ++j) r[j] = load_as<float>(b + (h * 8 + j) * cs + k);
        transpose(r);
        for (int t = 0; t < 8; ++t) store_vec(out + (k + t) * NR + h * 8, r[t]);
      }
    }
  }
  for (; k < kc; ++k)
    for (int64_t j = 0; j < NR; ++j)
      out[k * NR + j] = j < cols ? element(b + k * rs + j * cs) : 0.0f;
}

// A[0:rows, 0:kc] (rows <= MR) into out[k * MR + i]. out needs 2 floats of slack at its end:
// the transposed path stores 8 floats per k, the last 2 of which the next k overwrites.
template <class T>
void pack_a_sliver(const T* a, int64_t rs, int64_t cs, int64_t kc, int64_t rows, float* out) {
  int64_t k = 0;
  if (rows == MR && cs == 1) {
    for (; k + 8 <= kc; k += 8) {
      vf8 r[8];
      for (int i = 0; i < MR; ++i) r[i] = load_as<float>(a + i * rs + k);
      r[6] = r[7] = Vec<float>::broadcast(0.0f);
      transpose(r);
      for (int t = 0; t < 8; ++t) store_vec(out + (k + t) * MR, r[t]);
    }
  }
  for (; k < kc; ++k)
    for (int64_t i = 0; i < MR; ++i)
      out[k * MR + i] = i < rows ? element(a + i * rs + k * cs) : 0.0f;
}

// ---- the register tile ----

// c[0:MR, 0:NR] (row stride ldc) = (accumulate ? c : 0) + ap^T bp over kc steps.
__attribute__((noinline)) inline void micro_kernel(int64_t kc, const float* ap, const float* bp,
                                                   float* c, int64_t ldc, bool accumulate) {
  vf8 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = Vec<float>::broadcast(0.0f);
  for (int64_t k = 0; k < kc; ++k) {
    const vf8 b0 = load_as<float>(bp), b1 = load_as<float>(bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const vf8 ai = Vec<float>::broadcast(ap[i]);
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
    ap += MR;
    bp += NR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
    if (accumulate) {
      acc[i][0] += load_as<float>(row);
      acc[i][1] += load_as<float>(row + 8);
    }
    store_vec(row, acc[i][0]);
    store_vec(row + 8, acc[i][1]);
  }
}

// ---- output: the float32 block into C, with the bias ----

// bias[i * rs + j * cs] is added to element (i, j); rs = cs = 0 with a null bias.
struct Bias {
  const float* p = nullptr;
  int64_t rs = 0, cs = 0;
  Bias transposed() const { return Bias{p, cs, rs}; }
  Bias at(int64_t i, int64_t j) const { return Bias{p ? p + i * rs + j * cs : p, rs, cs}; }
  float in_row(int64_t j) const { return p != nullptr ? p[j * cs] : 0.0f; }  // (0, j)
};

template <class TO>
void store_row(const float* acc, const Bias& bias, int64_t cols, TO* c, int64_t cs) {
  int64_t j = 0;
  if (cs == 1) {
    for (; j + 8 <= cols; j += 8) {
      vf8 v = load_as<float>(acc + j);
      if (bias.p != nullptr)  // a row's bias: one vector (per column) or one value (per row)
        v += bias.cs == 1 ? load_as<float>(bias.p + j) : Vec<float>::broadcast(bias.p[0]);
      store_vec_checked(c + j, v);
    }
  }
  for (; j < cols; ++j) c[j * cs] = StoreAs<TO>::from(acc[j] + bias.in_row(j));
}

// ---- the whole product for one batch entry ----

struct Plan {
  int64_t M, N, K;
  int threads;
};

template <class T, class TO>
void gemm_one(const T* a, const MatrixView& av, const T* b, const MatrixView& bv, TO* c,
              int64_t c_rs, int64_t c_cs, const Bias& bias, const Plan& p) {
  const int64_t nc_max = std::min(NC, round_up(p.N, NR));
  // Row blocks of equal size (each one packs B again), as few as the accumulator allows.
  const int64_t mb_cap = std::max<int64_t>(MR, kAccumulatorFloats / nc_max / MR * MR);
  const int64_t m_parts = (p.M + mb_cap - 1) / mb_cap;
  const int64_t mb_max = round_up((p.M + m_parts - 1) / m_parts, MR);
  float* acc = thread_buffer<float, kSlotAccumulator>(mb_max * nc_max);
  float* bpack = thread_buffer<float, kSlotPackedB>(KC * nc_max);
  const int64_t a_block_floats = MC * KC + 8;

  for (int64_t m0 = 0; m0 < p.M; m0 += mb_max) {
    const int64_t mb = std::min(mb_max, p.M - m0);
    const int64_t m_blocks = (mb + MC - 1) / MC;
    for (int64_t j0 = 0; j0 < p.N; j0 += nc_max) {
      const int64_t nc = std::min(nc_max, p.N - j0);
      const int64_t ldc = round_up(nc, NR);
      const int64_t slivers = ldc / NR;
      // Few row blocks: split the columns too, so that every thread has work.
      const int64_t col_parts =
          std::min<int64_t>(slivers, std::max<int64_t>(1, (p.threads + m_blocks - 1) / m_blocks));
      const int64_t items = m_blocks * col_parts;
#pragma omp parallel num_threads(p.threads)
      {
        float* apack = thread_buffer<float, kSlotPackedA>(a_block_floats);
        for (int64_t p0 = 0; p0 < p.K; p0 += KC) {
          const int64_t kc = std::min(KC, p.K - p0);
#pragma omp for schedule(static)
          for (int64_t s = 0; s < slivers; ++s)
            pack_b_sliver(b + p0 * bv.rs + (j0 + s * NR) * bv.cs, bv.rs, bv.cs, kc,
                          std::min<int64_t>(NR, nc - s * NR), bpack + s * kc * NR);
#pragma omp for schedule(static)
          for (int64_t item = 0; item < items; ++item) {
            const int64_t ib = item / col_parts, part = item % col_parts;
            const int64_t i0 = ib * MC, mc = std::min(MC, mb - i0);
            const int64_t s0 = slivers * part / col_parts, s1 = slivers * (part + 1) / col_parts;
            for (int64_t r = 0; r < mc; r += MR)
              pack_a_sliver(a + (m0 + i0 + r) * av.rs + p0 * av.cs, av.rs, av.cs, kc,
                            std::min<int64_t>(MR, mc - r), apack + r * kc);
            for (int64_t s = s0; s < s1; ++s)
              for (int64_t r = 0; r < mc; r += MR)
                micro_kernel(kc, apack + r * kc, bpack + s * kc * NR, acc + (i0 + r) * ldc + s * NR,
                             ldc, p0 > 0);
          }
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < mb; ++i)
          store_row(acc + i * ldc, bias.at(m0 + i, j0), nc, c + (m0 + i) * c_rs + j0 * c_cs,
                    c_cs);
      }
    }
  }
}

// y[0:N] = x[0:K] @ B: one pass over B, x (converted once) from L1/L2.
template <class T, class TO>
void gemv_one(const T* x, int64_t xs, const T* b, const MatrixView& bv, TO* y, int64_t ys,
              const Bias& bias, const Plan& p) {
  float* xf = thread_buffer<float, kSlotVector>(p.K + 8);
  for (int64_t k = 0; k < p.K; ++k) xf[k] = element(x + k * xs);
  if (bv.rs == 1) {
    // Columns of B contiguous along k: one dot product per output, 4 columns at a time.
#pragma omp parallel for num_threads(p.threads) schedule(static)
    for (int64_t j0 = 0; j0 < p.N; j0 += 4) {
      const int64_t cols = std::min<int64_t>(4, p.N - j0);
      vf8 sums[4];
      float tails[4] = {0, 0, 0, 0};
      for (int64_t j = 0; j < 4; ++j) sums[j] = Vec<float>::broadcast(0.0f);
      int64_t k = 0;
      for (; k + 8 <= p.K; k += 8) {
        const vf8 xv = load_as<float>(xf + k);
        for (int64_t j = 0; j < cols; ++j) sums[j] += xv * load_as<float>(b + (j0 + j) * bv.cs + k);
      }
      for (int64_t j = 0; j < cols; ++j) {
        for (int64_t kk = k; kk < p.K; ++kk) tails[j] += xf[kk] * element(b + (j0 + j) * bv.cs + kk);
        float s = tails[j];
        for (int l = 0; l < 8; ++l) s += sums[j][l];
        y[(j0 + j) * ys] = StoreAs<TO>::from(s + bias.in_row(j0 + j));
      }
    }
    return;
  }
  // Rows of B (contiguous or not along n): y += x[k] * B[k, :], a strip of columns per thread.
  constexpr int64_t kStrip = 512;
#pragma omp parallel for num_threads(p.threads) schedule(static)
  for (int64_t j0 = 0; j0 < p.N; j0 += kStrip) {
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
  }
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
      gemm_one(ab, g.a, bb, g.b, cb, g.c_rs, g.c_cs, bias, Plan{g.M, g.N, g.K, g.threads});
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

}  // namespace half_gemm_detail

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
