// Portable build of the linear scan kernels, and the one entry point that validates and
// dispatches.
#define KK_ISA portable
#include "scan/linear_scan_impl.h"
#include "scan/linear_scan_backward_impl.h"

#include <stdexcept>
#include <string>

namespace kernelkit {

static void check_linear_scan_args(const LinearScanArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("linear_scan: " + what);
  };
  if (a.n0 < 0 || a.len < 0 || a.n1 < 0) fail("sizes must be >= 0");
  if (a.threads < 1) fail("threads must be >= 1");
  if (a.is_complex && a.dtype != DType::f32 && a.dtype != DType::f64)
    fail("complex values need float32 or float64 halves");
  const ScanStrides* all[] = {&a.a_strides, &a.x_strides, &a.out_strides};
  for (const ScanStrides* s : all)
    if (s->s0 < 0 || s->st < 0 || s->s1 < 0) fail("strides must be >= 0");
  if (a.h0_s0 < 0 || a.h0_s1 < 0) fail("strides must be >= 0");
  if (a.n0 == 0 || a.len == 0 || a.n1 == 0) return;
  if (a.a == nullptr || a.x == nullptr || a.out == nullptr) fail("null data pointer");
  const ScanStrides& o = a.out_strides;
  if ((a.n0 > 1 && o.s0 == 0) || (a.len > 1 && o.st == 0) || (a.n1 > 1 && o.s1 == 0))
    fail("out must not overlap itself (zero stride on a dim of size > 1)");
}

static void check_linear_scan_backward_args(const LinearScanBackwardArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("linear_scan_backward: " + what);
  };
  if (a.n0 < 0 || a.len < 0 || a.n1 < 0) fail("sizes must be >= 0");
  if (a.threads < 1) fail("threads must be >= 1");
  if (a.is_complex && a.dtype != DType::f32 && a.dtype != DType::f64)
    fail("complex values need float32 or float64 halves");
  const ScanStrides* all[] = {&a.a_strides, &a.grad_strides, &a.h_strides, &a.dx_strides,
                              &a.da_strides};
  for (const ScanStrides* s : all)
    if (s->s0 < 0 || s->st < 0 || s->s1 < 0) fail("strides must be >= 0");
  if (a.h0_s0 < 0 || a.h0_s1 < 0 || a.dh0_s0 < 0 || a.dh0_s1 < 0) fail("strides must be >= 0");
  if (a.n0 == 0 || a.len == 0 || a.n1 == 0) return;
  if (!a.a || !a.grad || !a.h || !a.dx || !a.da || !a.dh0) fail("null data pointer");
  for (const ScanStrides* o : {&a.dx_strides, &a.da_strides})
    if ((a.n0 > 1 && o->s0 == 0) || (a.len > 1 && o->st == 0) || (a.n1 > 1 && o->s1 == 0))
      fail("dx and da must not overlap themselves (zero stride on a dim of size > 1)");
  if ((a.n0 > 1 && a.dh0_s0 == 0) || (a.n1 > 1 && a.dh0_s1 == 0))
    fail("dh0 must not overlap itself (zero stride on a dim of size > 1)");
}

void linear_scan_backward(const LinearScanBackwardArgs& args, Isa isa) {
  check_linear_scan_backward_args(args);
  if (args.n0 == 0 || args.len == 0 || args.n1 == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::linear_scan_backward_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::linear_scan_backward_run(args);
#endif
  portable::linear_scan_backward_run(args);
}

void linear_scan(const LinearScanArgs& args, Isa isa) {
  check_linear_scan_args(args);
  if (args.n0 == 0 || args.len == 0 || args.n1 == 0) return;
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::linear_scan_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::linear_scan_run(args);
#endif
  portable::linear_scan_run(args);
}

}  // namespace kernelkit
