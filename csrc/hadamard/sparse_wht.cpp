// Portable build of the sparse WHT decoder, the front end (one fused pass per block of rows:
// gather the block's samples, then the dense fwht kernel on it while it is in L1), the sample
// indices, and the entry points that validate and dispatch.
#define KK_ISA portable
#include "hadamard/sparse_wht_impl.h"

#include <string>

#include "common/parallel.h"
#include "hadamard/fwht.h"

namespace kernelkit {

namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

// sub[c * B + l] = M_c l: the XOR of the columns of c at the set bits of l.
std::vector<int64_t> subspace_points(const SparseWhtPlan& p) {
  const int64_t B = p.bins();
  std::vector<int64_t> sub(size_t(p.groups * B), 0);
  for (int64_t c = 0; c < p.groups; ++c) {
    int64_t* s = sub.data() + c * B;
    const int64_t* cols = p.cols + c * p.b;
    for (int64_t l = 1; l < B; ++l) s[l] = s[l & (l - 1)] ^ cols[__builtin_ctzll(uint64_t(l))];
  }
  return sub;
}

template <class T>
void gather_rows(const T* sig, bool gathered, const SparseWhtPlan& p, const int64_t* sub,
                 double* U, int64_t row0, int64_t rows) {
  const int64_t D = p.delay_count(), B = p.bins();
  if (gathered) {
    for (int64_t i = row0 * B; i < (row0 + rows) * B; ++i) U[i] = static_cast<double>(sig[i]);
    return;
  }
  for (int64_t r = row0; r < row0 + rows; ++r) {
    const int64_t* s = sub + (r / D) * B;
    const int64_t d = p.delays[r % D];
    double* out = U + r * B;
    for (int64_t l = 0; l < B; ++l) out[l] = static_cast<double>(sig[s[l] ^ d]);
  }
}

constexpr int64_t kBlockElements = 2048;  // 16 KiB of U per fused gather + transform block
// Fewer samples than this per thread run on fewer threads: a small front end (n = 20, K = 100:
// 3840 samples, about 8 us; n = 24, K = 1000: 32768 samples, about 50 us) costs less than
// waking a second thread, which on a shared machine may wait a scheduler tick.
constexpr int64_t kSamplesPerThread = 65536;

}  // namespace

void check_sparse_wht_plan(const char* op, const SparseWhtPlan& p) {
  if (p.n < 1 || p.n > 62) fail(op, "n must be in [1, 62]; got " + std::to_string(p.n));
  if (p.b < 0 || p.b > std::min(p.n, 30))
    fail(op, "b must be in [0, min(n, 30)]; got " + std::to_string(p.b));
  if (p.groups < 1) fail(op, "groups must be >= 1");
  if (p.chains < 1) fail(op, "chains must be >= 1");
  if ((p.b > 0 && p.cols == nullptr) || p.delays == nullptr) fail(op, "null plan pointer");
  const uint64_t limit = uint64_t(1) << p.n;
  for (int64_t i = 0; i < int64_t(p.groups) * p.b; ++i)
    if (uint64_t(p.cols[i]) >= limit) fail(op, "a column of the plan is not an n-bit integer");
  const int m = p.directions();
  for (int64_t i = 0; i < p.delay_count(); ++i) {
    if (uint64_t(p.delays[i]) >= limit) fail(op, "a delay of the plan is not an n-bit integer");
    const int q = int(i % (m + 1));
    if (q > 0 && (p.delays[i] ^ p.delays[i - q]) != (p.delays[q] ^ p.delays[0]))
      fail(op, "the delays must be chains r, r ^ a_1, .., r ^ a_{n-b} with the same a_i");
  }
  std::vector<int64_t> rows(size_t(p.n)), inv(size_t(p.n));
  for (int c = 0; c < p.groups; ++c) {
    group_functionals(p, c, rows.data());
    if (!invert_rows_f2(rows.data(), p.n, inv.data()))
      fail(op, "the columns of group " + std::to_string(c) +
                   " and the delay directions do not span F_2^n");
  }
}

void group_functionals(const SparseWhtPlan& p, int c, int64_t* rows) {
  for (int t = 0; t < p.b; ++t) rows[t] = p.cols[int64_t(c) * p.b + t];
  for (int i = 0; i < p.directions(); ++i) rows[p.b + i] = p.delays[1 + i] ^ p.delays[0];
}

bool invert_rows_f2(const int64_t* rows, int n, int64_t* inv) {
  std::vector<uint64_t> left(rows, rows + n);
  for (int t = 0; t < n; ++t) inv[t] = int64_t(1) << t;
  for (int q = 0; q < n; ++q) {
    int pivot = q;
    while (pivot < n && !((left[size_t(pivot)] >> q) & 1)) ++pivot;
    if (pivot == n) return false;
    std::swap(left[size_t(q)], left[size_t(pivot)]);
    std::swap(inv[q], inv[pivot]);
    for (int i = 0; i < n; ++i)
      if (i != q && ((left[size_t(i)] >> q) & 1)) {
        left[size_t(i)] ^= left[size_t(q)];
        inv[i] ^= inv[q];
      }
  }
  return true;
}

void sparse_wht_indices(const SparseWhtPlan& p, int64_t* out) {
  check_sparse_wht_plan("sparse_wht_indices", p);
  if (out == nullptr) fail("sparse_wht_indices", "null output pointer");
  const std::vector<int64_t> sub = subspace_points(p);
  const int64_t D = p.delay_count(), B = p.bins();
  for (int64_t r = 0; r < p.groups * D; ++r) {
    const int64_t* s = sub.data() + (r / D) * B;
    const int64_t d = p.delays[r % D];
    for (int64_t l = 0; l < B; ++l) out[r * B + l] = s[l] ^ d;
  }
}

void sparse_wht_front(const SparseWhtFrontArgs& a, Isa isa) {
  const char* op = "sparse_wht_front";
  const SparseWhtPlan& p = a.plan;
  check_sparse_wht_plan(op, p);
  const int64_t D = p.delay_count(), B = p.bins(), rows = p.groups * D;
  if (a.signal == nullptr || a.U == nullptr) fail(op, "null data pointer");
  if (a.dtype != DType::f32 && a.dtype != DType::f64) fail(op, "dtype must be f32 or f64");
  if (a.threads < 1) fail(op, "threads must be >= 1");
  if (a.gathered ? a.length != rows * B : a.length != (int64_t(1) << p.n))
    fail(op, "signal has " + std::to_string(a.length) + " elements; expected " +
                 std::to_string(a.gathered ? rows * B : int64_t(1) << p.n));
  const std::vector<int64_t> sub = a.gathered ? std::vector<int64_t>() : subspace_points(p);
  const int64_t per_block = std::max<int64_t>(1, kBlockElements / B);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  const int threads = int(std::min<int64_t>(
      {int64_t(a.threads), blocks, std::max<int64_t>(1, rows * B / kSamplesPerThread)}));
  portable::ParallelErrors errors;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    errors.run([&] {
      const int64_t row0 = blk * per_block, count = std::min(per_block, rows - row0);
      if (a.dtype == DType::f32)
        gather_rows(static_cast<const float*>(a.signal), a.gathered, p, sub.data(), a.U, row0,
                    count);
      else
        gather_rows(static_cast<const double*>(a.signal), a.gathered, p, sub.data(), a.U, row0,
                    count);
      FwhtArgs f;
      f.src = f.dst = a.U + row0 * B;
      f.rows = count;
      f.n = B;
      f.src_row_stride = f.dst_row_stride = B;
      f.dtype = DType::f64;
      f.scale = 1.0 / double(B);
      f.threads = 1;
      fwht(f, isa);
    });
  }
  errors.rethrow();
}

void sparse_wht_decode(const SparseWhtDecodeArgs& a, Isa isa) {
  const char* op = "sparse_wht_decode";
  check_sparse_wht_plan(op, a.plan);
  if (a.U == nullptr || a.stats == nullptr) fail(op, "null data pointer");
  if (a.max_peel < 0) fail(op, "max_peel must be >= 0");
  if (a.max_peel > 0 && (a.out_indices == nullptr || a.out_values == nullptr))
    fail(op, "null output pointer");
  if (!(a.sigma >= 0) || !std::isfinite(a.sigma)) fail(op, "sigma must be finite and >= 0");
  if (!(a.floor_rel >= 0)) fail(op, "floor_rel must be >= 0");
  if (isa >= Isa::avx512) {
#if defined(KERNELKIT_HAVE_AVX512)
    return avx512::sparse_wht_decode_run(a);
#endif
  }
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::sparse_wht_decode_run(a);
#endif
  }
  portable::sparse_wht_decode_run(a);
}

}  // namespace kernelkit
