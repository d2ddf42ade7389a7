// Portable build of binary_gemm, and the one entry point that validates and dispatches.
#define KK_ISA portable
#include "binary/binary_gemm_impl.h"

#include <limits>
#include <stdexcept>
#include <string>

#include "binary/binary_isa.h"

namespace kernelkit {

static void check_binary_gemm_args(const BinaryGemmArgs& g) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("binary_gemm: " + what);
  };
  if (g.batch < 0 || g.M < 0 || g.N < 0 || g.K < 0) fail("batch, M, N and K must be >= 0");
  if (g.K > std::numeric_limits<int32_t>::max()) fail("K must be < 2**31 (int32 results)");
  if (g.threads < 1) fail("threads must be >= 1");
  if (g.out_int32 && (g.scale != nullptr || g.bias != nullptr || g.scale_value != 1.0))
    fail("scale and bias need a float output");
  const int64_t words = (g.K + 31) / 32;
  for (const BinaryOperand* op : {&g.a, &g.b}) {
    if (op->packed && op->k_extent != words)
      fail("a packed operand has " + std::to_string(op->k_extent) + " words; K = " +
           std::to_string(g.K) + " bits need " + std::to_string(words));
    if (!op->packed && op->k_extent != g.K)
      fail("a float operand has " + std::to_string(op->k_extent) + " elements along K = " +
           std::to_string(g.K));
  }
  if (g.batch == 0 || g.M == 0 || g.N == 0) return;
  if (g.c == nullptr) fail("null output pointer");
  if (g.K > 0 && (g.a.p == nullptr || g.b.p == nullptr)) fail("null input pointer");
}

void binary_gemm(const BinaryGemmArgs& args, Isa isa) {
  check_binary_gemm_args(args);
  if (args.batch == 0 || args.M == 0 || args.N == 0) return;
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::binary_gemm_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::binary_gemm_run(args);
#endif
  portable::binary_gemm_run(args);
}

double binary_popcount_peak(int threads, Isa isa) {
  if (threads < 1) throw std::invalid_argument("binary_popcount_peak: threads must be >= 1");
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::binary_popcount_peak_run(threads);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::binary_popcount_peak_run(threads);
#endif
  return portable::binary_popcount_peak_run(threads);
}

}  // namespace kernelkit
