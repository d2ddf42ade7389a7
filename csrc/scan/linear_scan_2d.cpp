// Portable build of the 2-D linear scan kernels, and the entry points that validate and dispatch.
#define KK_ISA portable
#include "scan/linear_scan_2d_impl.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kernelkit {
namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

void check_common(const char* op, const LinearScan2dArgs& s) {
  if (s.batch < 0 || s.T < 0 || s.V < 0) fail(op, "batch, T and V must be >= 0");
  if (s.threads < 1) fail(op, "threads must be >= 1");
}

void check_plane(const char* op, const char* name, const Scan2dPlane& p) {
  if (p.data == nullptr) fail(op, std::string(name) + ": null data pointer");
  if (p.batch_stride < 0 || p.row_stride < 0) fail(op, std::string(name) + ": negative stride");
}

void check_edge(const char* op, const char* name, const Scan2dEdge& e) {
  if (e.data != nullptr && (e.batch_stride < 0 || e.stride < 0))
    fail(op, std::string(name) + ": negative stride");
}

// Sufficient for distinct elements: rows of V contiguous values, the two outer dims nested
// (each, in order of stride, steps past everything the smaller one spans).
void check_out(const char* op, const char* name, const Scan2dOut& o, const LinearScan2dArgs& s) {
  if (o.data == nullptr) fail(op, std::string(name) + ": null data pointer");
  int64_t dims[2][2] = {{o.row_stride, s.T}, {o.batch_stride, s.batch}};
  if (dims[0][0] > dims[1][0]) std::swap(dims[0], dims[1]);
  int64_t span = s.V;
  for (const auto& d : dims) {
    if (d[1] <= 1) continue;
    if (d[0] < span) fail(op, std::string(name) + ": strides would make output elements overlap");
    span = d[0] * d[1];
  }
}

bool empty(const LinearScan2dArgs& s) { return s.batch == 0 || s.T == 0 || s.V == 0; }

}  // namespace

void linear_scan_2d_forward(const LinearScan2dForward& a, Isa isa) {
  const char* op = "linear_scan_2d";
  check_common(op, a.s);
  if (empty(a.s)) return;
  check_plane(op, "a_t", a.s.a_t);
  check_plane(op, "a_v", a.s.a_v);
  check_plane(op, "x", a.x);
  check_edge(op, "h0_t", a.s.h0_t);
  check_edge(op, "h0_v", a.s.h0_v);
  check_out(op, "h", a.h, a.s);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::linear_scan_2d_forward_run(a);
#endif
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::linear_scan_2d_forward_run(a);
#endif
  }
  portable::linear_scan_2d_forward_run(a);
}

void linear_scan_2d_backward(const LinearScan2dBackward& a, Isa isa) {
  const char* op = "linear_scan_2d_backward";
  check_common(op, a.s);
  if (empty(a.s)) return;
  check_plane(op, "a_t", a.s.a_t);
  check_plane(op, "a_v", a.s.a_v);
  check_plane(op, "grad", a.grad);
  check_edge(op, "h0_t", a.s.h0_t);
  check_edge(op, "h0_v", a.s.h0_v);
  check_out(op, "dx", a.dx, a.s);
  if (a.da_t.data != nullptr) check_out(op, "da_t", a.da_t, a.s);
  if (a.da_v.data != nullptr) check_out(op, "da_v", a.da_v, a.s);
  if (a.da_t.data != nullptr || a.da_v.data != nullptr) check_plane(op, "h", a.h);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::linear_scan_2d_backward_run(a);
#endif
  if (isa >= Isa::avx2) {
#if defined(KERNELKIT_HAVE_AVX2)
    return avx2::linear_scan_2d_backward_run(a);
#endif
  }
  portable::linear_scan_2d_backward_run(a);
}

}  // namespace kernelkit
