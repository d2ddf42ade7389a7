// Sparse Walsh-Hadamard transform (SPRIGHT): the front end (gather the samples
// x[M_c l xor d] of every group c and delay d, then the B-point WHT / B of each row, reusing
// the dense fwht kernel) and the peeling decoder. The math and the order of the steps are the
// reference's (python/kernelkit/reference/sparse_wht.py); the sampling plan (the columns of
// every M_c and the delays) comes from Python.
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct SparseWhtPlan {
  int n = 0;                       // signal length 2**n, 1 <= n <= 62
  int b = 0;                       // B = 2**b bins per group, 0 <= b <= min(n, 30)
  int groups = 0;
  int chains = 0;                  // D = chains * (n - b + 1) delays: r_p, r_p ^ a_1, ..,
                                   // r_p ^ a_{n-b} (the same directions a_i in every chain)
  const int64_t* cols = nullptr;   // (groups, b) n-bit columns of the M_c
  const int64_t* delays = nullptr; // (D,) n-bit delays
  int directions() const { return n - b; }
  int64_t delay_count() const { return int64_t(chains) * (n - b + 1); }
  int64_t bins() const { return int64_t(1) << b; }
};

struct SparseWhtFrontArgs {
  SparseWhtPlan plan;
  // gathered == false: signal is the whole length-2**n signal and the samples are read from
  // it; gathered == true: signal holds the samples already, (groups, D, B) in order.
  const void* signal = nullptr;
  int64_t length = 0;              // elements of signal
  bool gathered = false;
  DType dtype = DType::f64;        // f32 or f64
  double* U = nullptr;             // (groups, D, B) out: U[c][d][j]
  int threads = 1;
};

struct SparseWhtDecodeArgs {
  SparseWhtPlan plan;
  const double* U = nullptr;       // (groups, D, B) from the front end (read only)
  double sigma = 0;                // per-sample noise standard deviation (when !auto_noise)
  bool auto_noise = false;         // estimate it from the bins
  double floor_rel = 1e-13;        // bin noise floor relative to the sampled rms
  int64_t max_peel = 0;            // capacity of out_indices / out_values
  int64_t* out_indices = nullptr;
  double* out_values = nullptr;
  // out: found (the coefficients in out_indices / out_values: those above 3 standard errors
  // of zero, by |value| descending, ties by index), zero_tons, single_tons, multi_tons,
  // unresolved, peels, noise, explained
  double* stats = nullptr;
};

constexpr int kSparseWhtStats = 8;

// Each validates (std::invalid_argument naming the argument; nothing is touched on bad input).
void sparse_wht_indices(const SparseWhtPlan& plan, int64_t* out);  // (groups, D, B)
void sparse_wht_front(const SparseWhtFrontArgs& args, Isa isa);
void sparse_wht_decode(const SparseWhtDecodeArgs& args, Isa isa);

void check_sparse_wht_plan(const char* op, const SparseWhtPlan& plan);

// inv[q] (n entries) with bit q of k = parity(inv[q] & y) for the k that has <rows[t], k> =
// bit t of y, t < n (the inverse of the n x n matrix over F_2 with rows rows[t]); false when
// the rows are not independent.
bool invert_rows_f2(const int64_t* rows, int n, int64_t* inv);

// The n functionals of group c: its b columns, then the n - b delay directions.
void group_functionals(const SparseWhtPlan& plan, int c, int64_t* rows);

namespace portable { void sparse_wht_decode_run(const SparseWhtDecodeArgs& a); }
namespace avx2 { void sparse_wht_decode_run(const SparseWhtDecodeArgs& a); }
namespace avx512 { void sparse_wht_decode_run(const SparseWhtDecodeArgs& a); }

}  // namespace kernelkit
