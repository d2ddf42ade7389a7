// Portable build of the FWHT kernels, and the one entry point that validates and dispatches.
#define KK_ISA portable
#include "hadamard/fwht_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_fwht_args(const FwhtArgs& a) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("fwht: " + what); };
  if (a.m != 1 && a.m != 12 && a.m != 20 && a.m != 28 && a.m != 40)
    fail("m must be 1, 12, 20, 28 or 40; got " + std::to_string(a.m));
  if (a.n < 1 || a.n % a.m != 0) fail("n must be a positive multiple of m");
  const int64_t len = a.n / a.m;
  if ((len & (len - 1)) != 0 || len > (int64_t(1) << 30))
    fail("n / m must be a power of two <= 2**30; got n = " + std::to_string(a.n));
  if (a.rows < 0) fail("rows must be >= 0");
  if (a.threads < 1) fail("threads must be >= 1");
  if (a.rows == 0) return;
  if (a.src == nullptr || a.dst == nullptr) fail("null data pointer");
  if (a.m > 1 && a.had_m == nullptr) fail("had_m is required when m > 1");
  if (a.rows > 1 && (a.src_row_stride < a.n || a.dst_row_stride < a.n))
    fail("row strides must be >= n (rows may not overlap)");
  if (a.src == a.dst && a.src_row_stride != a.dst_row_stride)
    fail("in-place call needs equal source and destination row strides");
}

void fwht(const FwhtArgs& args, Isa isa) {
  check_fwht_args(args);
  if (args.rows == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::fwht_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::fwht_run(args);
#endif
  portable::fwht_run(args);
}

}  // namespace kernelkit
