// Portable build of the quantizer kernels, and the entry points that validate and dispatch.
#define KK_ISA portable
#include "binary/quantizers_impl.h"

#include <stdexcept>
#include <string>

#include "binary/binary_isa.h"

namespace kernelkit {

namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

int64_t element_bytes(DType dtype) { return dtype == DType::f64 ? 8 : dtype == DType::f32 ? 4 : 2; }

bool overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  if (a == nullptr || b == nullptr) return false;
  const char* p = static_cast<const char*>(a);
  const char* q = static_cast<const char*>(b);
  return p < q + b_bytes && q < p + a_bytes;
}

void check_kind(const char* op, QuantKind kind) {
  if (int(kind) < 0 || int(kind) > int(QuantKind::periodic_sign)) fail(op, "unknown kind");
}

}  // namespace

void quantize(const QuantizeArgs& a, Isa isa) {
  constexpr const char* op = "quantize";
  check_kind(op, a.kind);
  if (a.n < 0 || a.threads < 1 || a.channels < 1) fail(op, "n, threads, channels out of range");
  if (a.n == 0) return;
  if (a.x == nullptr || a.out == nullptr) fail(op, "null data pointer");
  const int64_t bytes = a.n * element_bytes(a.dtype), words = (a.n + 31) / 32 * 4;
  if (overlap(a.x, bytes, a.out, bytes)) fail(op, "out overlaps x");
  if (overlap(a.mask, words, a.out, bytes) || overlap(a.mask, words, a.x, bytes))
    fail(op, "mask overlaps x or out");
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::quantize_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::quantize_run(a);
#endif
  portable::quantize_run(a);
}

void quantize_backward(const QuantizeBackwardArgs& a, Isa isa) {
  constexpr const char* op = "quantize_backward";
  check_kind(op, a.kind);
  if (a.n < 0 || a.threads < 1 || a.channels < 1) fail(op, "n, threads, channels out of range");
  if (a.n == 0) return;
  const bool surrogate = a.kind == QuantKind::approx_sign || a.kind == QuantKind::swish_sign ||
                         a.kind == QuantKind::periodic_sign;
  if (a.grad == nullptr || a.out == nullptr || (a.mask == nullptr && !surrogate) ||
      (a.mask == nullptr && a.x == nullptr))
    fail(op, "null data pointer (the clipped kinds need mask, the surrogates x or mask)");
  const int64_t bytes = a.n * element_bytes(a.dtype), words = (a.n + 31) / 32 * 4;
  if (overlap(a.grad, bytes, a.out, bytes) || overlap(a.x, bytes, a.out, bytes) ||
      overlap(a.mask, words, a.out, bytes))
    fail(op, "out overlaps an input");
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::quantize_backward_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::quantize_backward_run(a);
#endif
  portable::quantize_backward_run(a);
}

}  // namespace kernelkit
