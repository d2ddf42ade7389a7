// Portable build of the half GEMM, and the one entry point that validates and dispatches.
#define KK_ISA portable
#include "gemm/half_gemm_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_half_gemm_args(const HalfGemmArgs& g) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("half_gemm: " + what); };
  if (g.batch < 0 || g.M < 0 || g.N < 0 || g.K < 0) fail("batch, M, N and K must be >= 0");
  if (g.threads < 1) fail("threads must be >= 1");
  if (g.in_dtype == DType::f64 || g.out_dtype == DType::f64) fail("float64 is not supported");
  if (g.batch == 0 || g.M == 0 || g.N == 0) return;
  if (g.c == nullptr) fail("null output pointer");
  if (g.K > 0 && (g.a.p == nullptr || g.b.p == nullptr)) fail("null input pointer");
}

void half_gemm(const HalfGemmArgs& args, Isa isa) {
  check_half_gemm_args(args);
  if (args.batch == 0 || args.M == 0 || args.N == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::half_gemm_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::half_gemm_run(args);
#endif
  portable::half_gemm_run(args);
}

double half_gemm_peak(int threads, Isa isa, DType dtype) {
  if (threads < 1) throw std::invalid_argument("half_gemm_peak: threads must be >= 1");
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::half_gemm_peak_run(threads, dtype);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::half_gemm_peak_run(threads, dtype);
#endif
  return portable::half_gemm_peak_run(threads, dtype);
}

}  // namespace kernelkit
