// Portable build of the bit packing kernels, and the entry points that validate and dispatch.
#define KK_ISA portable
#include "binary/bit_packing_impl.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "binary/binary_isa.h"

namespace kernelkit {

namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

int64_t element_bytes(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16:
    case DType::bf16: return 2;
  }
  return 0;
}

// One (outer, n or words, inner) view of a tensor: its extents, strides and element size.
struct View3 {
  const char* name;
  const void* p;
  int64_t sizes[3];
  int64_t strides[3];
  int64_t bytes;  // per element

  View3(const char* name_, const void* p_, int64_t outer, int64_t along, int64_t inner,
        const Strides3& s, int64_t bytes_)
      : name(name_), p(p_), sizes{outer, along, inner}, strides{s.outer, s.along, s.inner},
        bytes(bytes_) {}

  // The byte just past the last element, from p; fails on negative strides or overflow.
  int64_t span(const char* op) const {
    int64_t last = 0;
    for (int d = 0; d < 3; ++d) {
      if (strides[d] < 0) fail(op, std::string(name) + " strides must be >= 0");
      int64_t step;
      if (__builtin_mul_overflow(sizes[d] - 1, strides[d], &step) ||
          __builtin_add_overflow(last, step, &last))
        fail(op, std::string(name) + " is too large to index");
    }
    int64_t end;
    if (__builtin_mul_overflow(last + 1, bytes, &end))
      fail(op, std::string(name) + " is too large");
    return end;
  }

  // No two elements share memory: the dims of size > 1, by increasing stride, each step over
  // all of the ones before.
  void check_no_self_overlap(const char* op) const {
    int order[3] = {0, 1, 2};
    std::sort(order, order + 3, [&](int a, int b) { return strides[a] < strides[b]; });
    int64_t extent = 1;
    for (int d : order) {
      if (sizes[d] <= 1) continue;
      if (strides[d] < extent) fail(op, std::string(name) + " elements overlap (strides)");
      extent = strides[d] * sizes[d];
    }
  }
};

void check_disjoint(const char* op, const View3& in, const View3& out) {
  const char* a = static_cast<const char*>(in.p);
  const char* b = static_cast<const char*>(out.p);
  const int64_t in_span = in.span(op), out_span = out.span(op);
  if (a < b + out_span && b < a + in_span)
    fail(op, std::string(out.name) + " overlaps " + in.name);
}

void check_sizes(const char* op, int64_t outer, int64_t n, int64_t inner, int threads) {
  if (outer < 0 || n < 0 || inner < 0) fail(op, "outer, n and inner must be >= 0");
  if (threads < 1) fail(op, "threads must be >= 1");
}

bool empty(int64_t outer, int64_t n, int64_t inner) { return outer == 0 || n == 0 || inner == 0; }

}  // namespace

bool pack_signs(const PackSignsArgs& a, Isa isa) {
  constexpr const char* op = "pack_signs";
  check_sizes(op, a.outer, a.n, a.inner, a.threads);
  if (empty(a.outer, a.n, a.inner)) return false;
  if (a.x == nullptr || a.words == nullptr) fail(op, "null data pointer");
  const View3 x("x", a.x, a.outer, a.n, a.inner, a.x_strides, element_bytes(a.dtype));
  const View3 words("words", a.words, a.outer, (a.n + 31) / 32, a.inner, a.word_strides, 4);
  words.check_no_self_overlap(op);
  check_disjoint(op, x, words);
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::pack_signs_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::pack_signs_run(a);
#endif
  return portable::pack_signs_run(a);
}

void unpack_signs(const UnpackSignsArgs& a, Isa isa) {
  constexpr const char* op = "unpack_signs";
  check_sizes(op, a.outer, a.n, a.inner, a.threads);
  if (empty(a.outer, a.n, a.inner)) return;
  if (a.words == nullptr || a.out == nullptr) fail(op, "null data pointer");
  const View3 words("words", a.words, a.outer, (a.n + 31) / 32, a.inner, a.word_strides, 4);
  const View3 out("out", a.out, a.outer, a.n, a.inner, a.out_strides, element_bytes(a.dtype));
  out.check_no_self_overlap(op);
  check_disjoint(op, words, out);
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::unpack_signs_run(a);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::unpack_signs_run(a);
#endif
  portable::unpack_signs_run(a);
}

}  // namespace kernelkit
