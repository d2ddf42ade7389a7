// The GEMM core of the half family (half_gemm, half_conv2d), written once and compiled once
// per ISA. Goto/BLIS loops: per (KC x NC) panel of B, packed once as slivers of NR columns;
// per (MC x KC) block of A, packed per thread as slivers of MR rows; a register-tile
// micro-kernel over them. The float tile (every ISA): operands converted to float32 while
// packing (F16C / a shift for bfloat16), 6 x 16 (two ymm per row) or 6 x 64 under AVX-512
// (four zmm). The bfloat16 pair tile (AVX-512 builds, on CPUs with AVX512_BF16): operands
// kept as bfloat16 pairs along k, 6 x 64, one vdpbf16ps per two k and 16 columns
// (gemm_bf16_pairs_impl.h). Each element of A is packed N / NC times and each of B once;
// sums accumulate in a float32 block of C (rows padded to MR, columns to NR, so no tile has
// an edge), converted to the output dtype once at the end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/memory.h"
#include "common/scratch.h"
#include "common/tiling.h"
#include "common/vec.h"
#include "common/vec_transpose.h"
#include "gemm/half_gemm.h"  // MatrixView

namespace kernelkit {
namespace KK_ISA {
namespace half_gemm_detail {

constexpr int MR = 6;  // rows of the register tile: 6 broadcasts of A per step
// Columns of the register tile: 2 ymm (12 accumulators), or 4 zmm under AVX-512 (24 of the 32
// zmm registers), of B per step.
#if defined(KK_ISA_AVX512)
typedef float TileVec __attribute__((vector_size(64)));
constexpr int NR = 64;
#else
typedef vf8 TileVec;
constexpr int NR = 16;
#endif
constexpr int kTileLanes = int(sizeof(TileVec) / sizeof(float));
constexpr int NV = NR / kTileLanes;  // vectors of B per step
// k of a panel: a KC x NR sliver of B stays in L1 (16 KiB; 32 KiB for AVX-512's 64 columns).
#if defined(KK_ISA_AVX512)
constexpr int64_t KC = 128;
#else
constexpr int64_t KC = 256;
#endif
constexpr int64_t MC = 144;  // an MC x KC block of A (144 KiB) stays in L2
constexpr int64_t NC = 2048; // a KC x NC panel of B (2 MiB) in L2/L3
// The stretch of K whose A block (at most MC rows) is packed at once when one row block
// covers the rows: MC x KS floats (1.2 MiB) in L2/L3.
constexpr int64_t KS = 2048;
// The float32 accumulator block of C: MB x NC floats (5 MiB per thread, so that a 512-row block
// of 2048 columns is one part) at most; with the packed panels a thread holds about 7 MiB (a
// 4096^3 product on 2 threads: 14 MiB in all).
constexpr int64_t kAccumulatorFloats = (int64_t(1) << 20) + (int64_t(1) << 18);
// thread_buffer slots (distinct from the ones other kernels keep).
constexpr int kSlotAccumulator = 10, kSlotPackedB = 11, kSlotPackedA = 12, kSlotVector = 13;

template <class T> KK_INLINE float element(const T* p) { return to_compute<float>(*p); }

// ---- packing: float32 slivers, k-major, zero-padded to full tiles ----

// B[0:kc, 0:cols] (cols <= NR) into out[k * NR + j].
template <class T>
void pack_b_sliver(const T* b, int64_t rs, int64_t cs, int64_t kc, int64_t cols, float* out) {
  if (cols == NR && cs == 1) {
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 8
      for (int h = 0; h < NR / 8; ++h)
        store_vec(out + k * NR + 8 * h, load_as<float>(b + k * rs + 8 * h));
    return;
  }
  int64_t k = 0;
  if (cols == NR && rs == 1) {
    // Columns contiguous along k (e.g. a weight used transposed): 8 x 8 register transposes.
    for (; k + 8 <= kc; k += 8) {
      for (int h = 0; h < NR / 8; ++h) {
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

// r[0:MR] (8 k-steps of MR rows) transposed into out[k * MR + i] for k < n (n <= 8). Each k
// stores 8 floats, the last 2 of which the next k overwrites: out needs 2 floats of slack past
// k = n - 1, and the next k must be written after this one.
KK_INLINE void store_a_steps(vf8* r, int64_t n, float* out) {
  r[6] = r[7] = Vec<float>::broadcast(0.0f);
  transpose(r);
  for (int64_t k = 0; k < n; ++k) store_vec(out + k * MR, r[k]);
}

// A[0:rows, 0:kc] (rows <= MR) into out[k * MR + i]. out needs 2 floats of slack at its end
// (store_a_steps).
template <class T>
void pack_a_sliver(const T* a, int64_t rs, int64_t cs, int64_t kc, int64_t rows, float* out) {
  int64_t k = 0;
  if (rows == MR && cs == 1) {
    for (; k + 8 <= kc; k += 8) {
      vf8 r[8];
      for (int i = 0; i < MR; ++i) r[i] = load_as<float>(a + i * rs + k);
      store_a_steps(r, 8, out + k * MR);
    }
  }
  for (; k < kc; ++k)
    for (int64_t i = 0; i < MR; ++i)
      out[k * MR + i] = i < rows ? element(a + i * rs + k * cs) : 0.0f;
}

// The A operand of a dense matrix: pack(i0, rows, k0, kc, out) packs A[i0:i0+rows, k0:k0+kc].
template <class T> struct DenseA {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* out) const {
    pack_a_sliver(p + i0 * rs + k0 * cs, rs, cs, kc, rows, out);
  }
};

// The B operand of a dense matrix: pack(k0, kc, j0, cols, out) packs B[k0:k0+kc, j0:j0+cols].
template <class T> struct DenseB {
  const T* p;
  int64_t rs, cs;
  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* out) const {
    pack_b_sliver(p + k0 * rs + j0 * cs, rs, cs, kc, cols, out);
  }
};

// ---- the register tile ----

KK_INLINE TileVec load_tile_vec(const float* p) {
  TileVec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// c[0:MR, 0:NR] (row stride ldc) = (accumulate ? c : 0) + ap^T bp over kc steps.
__attribute__((noinline)) inline void micro_kernel(int64_t kc, const float* ap, const float* bp,
                                                   float* c, int64_t ldc, bool accumulate) {
  TileVec acc[MR][NV];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = TileVec{};
  // The sums this tile adds to sit in a block of C mostly out of L1: asked for now, they
  // arrive during the products.
  if (accumulate)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) prefetch_span(c + i * ldc + v * kTileLanes, 1);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    TileVec b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = load_tile_vec(bp + v * kTileLanes);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const TileVec ai = TileVec{} + ap[i];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * b[v];
    }
    ap += MR;
    bp += NR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* row = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (accumulate) acc[i][v] += load_tile_vec(row + v * kTileLanes);
      std::memcpy(row + v * kTileLanes, &acc[i][v], sizeof acc[i][v]);
    }
  }
}

// The float tile: operands packed as float32 (DenseA / DenseB and the convolution's sources),
// one FMA per element of the tile and k.
struct FloatTile {
  using Packed = float;
  static constexpr int kMR = MR, kNR = NR;
  static constexpr int64_t kKC = KC;
  static constexpr int64_t kNC = NC, kMC = MC;
  // A row block whose packed panel of A is at most this large runs by stretches of K (see
  // gemm_serial) even when it has more than kMC rows.
  static constexpr int64_t kStretchBytes = int64_t(640) << 10;
  static int64_t steps(int64_t kc) { return kc; }  // packed k-steps of kc elements
  // around a thread's share of a product: state the tile needs set up (AMX's tile shapes)
  static void begin() {}
  static void end() {}
  static void micro(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                    bool accumulate) {
    micro_kernel(kc, ap, bp, c, ldc, accumulate);
  }
};

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
void store_row(const float* acc, const Bias& bias, int64_t cols, TO* c, int64_t cs,
               bool accumulate) {
  if constexpr (std::is_same_v<TO, float>) {
    if (accumulate) {  // C += the block: sums of several products (float32 C only)
      for (int64_t j = 0; j < cols; ++j) c[j * cs] += acc[j] + bias.in_row(j);
      return;
    }
  }
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
  bool accumulate = false;  // C += A B (float32 C only); otherwise C = A B
};

// B[k0:k0+kc, j0:j0+nc] as slivers of TC columns, sliver s at out + s * stride: through the
// source's pack_panel where it has one (a sweep along rows), else sliver by sliver.
template <class BSource, class = void> struct HasPackPanel : std::false_type {};
template <class BSource>
struct HasPackPanel<BSource, std::void_t<decltype(&BSource::pack_panel)>> : std::true_type {};

template <int64_t TC, class BSource, class Packed>
void pack_panel(const BSource& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                int64_t stride, Packed* out) {
  if constexpr (HasPackPanel<BSource>::value) {
    b.pack_panel(k0, kc, j0, nc, stride, out);
  } else {
    for (int64_t s = 0; s * TC < nc; ++s)
      b.pack(k0, kc, j0 + s * TC, std::min<int64_t>(TC, nc - s * TC), out + s * stride);
  }
}

// Columns [j_begin, j_end) of rows [i_begin, i_end) of C = A B (+ bias) on the calling thread.
// A block of C is summed in a float32 accumulator over the KC panels, then stored once. Tile:
// FloatTile or Bf16PairTile; the sources pack Tile::Packed slivers of Tile::steps(kc) steps.
template <class Tile, class ASource, class BSource, class TO>
void gemm_serial(const ASource& a, const BSource& b, TO* c, int64_t c_rs, int64_t c_cs,
                 const Bias& bias, const Plan& p, int64_t i_begin, int64_t i_end,
                 int64_t j_begin, int64_t j_end) {
  using Packed = typename Tile::Packed;
  constexpr int64_t TR = Tile::kMR, TC = Tile::kNR, TK = Tile::kKC;
  constexpr int64_t TM = Tile::kMC / TR * TR;  // rows of an A block: whole tiles
  const int64_t K = p.K;
  const int64_t M = i_end - i_begin, N = j_end - j_begin;
  const int64_t nc_max = std::min(Tile::kNC, round_up(N, TC));
  // Row blocks of equal size (each one packs B again), as few as the accumulator allows.
  const int64_t mb_cap = std::max<int64_t>(TR, kAccumulatorFloats / nc_max / TR * TR);
  const int64_t m_parts = (M + mb_cap - 1) / mb_cap;
  const int64_t mb_max = round_up((M + m_parts - 1) / m_parts, TR);
  float* acc = thread_buffer<float, kSlotAccumulator>(mb_max * nc_max);
  Packed* bpack = thread_buffer<Packed, kSlotPackedB>(TK * nc_max);
  Packed* apack = thread_buffer<Packed, kSlotPackedA>(TM * KS + 8);
  Tile::begin();
  for (int64_t m0 = i_begin; m0 < i_end; m0 += mb_max) {
    const int64_t mb = std::min(mb_max, i_end - m0);
    for (int64_t j0 = j_begin; j0 < j_end; j0 += nc_max) {
      const int64_t nc = std::min(nc_max, j_end - j0);
      const int64_t ldc = round_up(nc, TC);
      const int64_t rows = round_up(mb, TR), panel_words = rows * Tile::steps(TK);
      if (mb <= TM || panel_words * int64_t(sizeof(Packed)) <= Tile::kStretchBytes) {
        // The row block's A packed for a stretch of K at a time (KS when it has at most TM
        // rows, else as much of K as TM x KS holds, at least a panel); then per sliver of
        // columns all its panels in turn, each packed right before its micro-kernels into one
        // L1-resident slot, the sliver's sums staying in L1 across panels: the stream of B
        // (and the next panel's prefetch, in the packers) overlaps the arithmetic, and every
        // B sliver is used once. (A panel of B packed whole and run block by block is read
        // back from beyond L2 once per block: a 1 MiB panel does not stay in a 1 MiB L2.)
        const int64_t stretch = std::clamp<int64_t>(KS * TM / rows / TK * TK, TK, KS);
        for (int64_t q0 = 0; q0 < K; q0 += stretch) {
          const int64_t kq = std::min(stretch, K - q0);
          for (int64_t p0 = q0; p0 < q0 + kq; p0 += TK) {
            const int64_t kc = std::min(TK, K - p0), steps = Tile::steps(kc);
            Packed* ap = apack + (p0 - q0) / TK * panel_words;
            for (int64_t r = 0; r < mb; r += TR)
              a.pack(m0 + r, std::min<int64_t>(TR, mb - r), p0, kc, ap + r * steps);
          }
          for (int64_t s = 0; s * TC < nc; ++s) {
            for (int64_t p0 = q0; p0 < q0 + kq; p0 += TK) {
              const int64_t kc = std::min(TK, K - p0), steps = Tile::steps(kc);
              const Packed* ap = apack + (p0 - q0) / TK * panel_words;
              b.pack(p0, kc, j0 + s * TC, std::min<int64_t>(TC, nc - s * TC), bpack);
              for (int64_t r = 0; r < mb; r += TR)
                Tile::micro(kc, ap + r * steps, bpack, acc + r * ldc + s * TC, ldc, p0 > 0);
            }
          }
        }
      } else {
        for (int64_t p0 = 0; p0 < K; p0 += TK) {
          const int64_t kc = std::min(TK, K - p0), steps = Tile::steps(kc);
          pack_panel<TC>(b, p0, kc, j0, nc, steps * TC, bpack);
          for (int64_t i0 = 0; i0 < mb; i0 += TM) {
            const int64_t mc = std::min(TM, mb - i0);
            for (int64_t r = 0; r < mc; r += TR)
              a.pack(m0 + i0 + r, std::min<int64_t>(TR, mc - r), p0, kc, apack + r * steps);
            for (int64_t s = 0; s * TC < nc; ++s)
              for (int64_t r = 0; r < mc; r += TR)
                Tile::micro(kc, apack + r * steps, bpack + s * steps * TC,
                            acc + (i0 + r) * ldc + s * TC, ldc, p0 > 0);
          }
        }
      }
      for (int64_t i = 0; i < mb; ++i)
        store_row(acc + i * ldc, bias.at(m0 + i, j0), nc, c + (m0 + i) * c_rs + j0 * c_cs,
                  c_cs, p.accumulate);
    }
  }
  Tile::end();
}

// C = A B (+ bias) for one batch entry; A and B come from packers (DenseA / DenseB, or views
// of a convolution's im2col matrix) of the Tile's format.
// Threads take disjoint column ranges (or row ranges when C has few columns), each packing its
// own panels: no barrier inside the call, which matters on a busy machine (a descheduled
// thread stalls every barrier for a time slice). The price is A (or B) packed once per thread.
template <class Tile = FloatTile, class ASource, class BSource, class TO>
void gemm_one(const ASource& a, const BSource& b, TO* c, int64_t c_rs, int64_t c_cs,
              const Bias& bias, const Plan& p) {
  constexpr int64_t TR = Tile::kMR, TC = Tile::kNR;
  const int64_t col_tiles = (p.N + TC - 1) / TC, row_tiles = (p.M + TR - 1) / TR;
  const bool split_columns = col_tiles >= 4 * p.threads || col_tiles >= row_tiles;
  const int64_t tiles = split_columns ? col_tiles : row_tiles;
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(p.threads, tiles)));
  if (threads == 1) return gemm_serial<Tile>(a, b, c, c_rs, c_cs, bias, p, 0, p.M, 0, p.N);
  parallel_region(threads, [&] {
    const int64_t t = omp_thread_index(), t0 = tiles * t / threads,
                  t1 = tiles * (t + 1) / threads;
    if (split_columns)
      gemm_serial<Tile>(a, b, c, c_rs, c_cs, bias, p, 0, p.M, t0 * TC, std::min(p.N, t1 * TC));
    else
      gemm_serial<Tile>(a, b, c, c_rs, c_cs, bias, p, t0 * TR, std::min(p.M, t1 * TR), 0, p.N);
  });
}

}  // namespace half_gemm_detail
}  // namespace KK_ISA
}  // namespace kernelkit
