// The only pybind11 file: raw pointers, sizes and strides in, no torch; the GIL is released
// around every kernel.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "hadamard/fwht.h"
#include "scan/selective_state_update.h"

namespace py = pybind11;
using namespace kernelkit;

namespace {

template <class T> T* as_ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  throw std::invalid_argument("unsupported dtype '" + name +
                              "'; expected float32, float64, float16 or bfloat16");
}

void fwht_binding(uintptr_t src, int64_t src_row_stride, uintptr_t dst, int64_t dst_row_stride,
                  int64_t rows, int64_t n, const std::string& dtype, int m, uintptr_t had_m,
                  double scale, int threads, const std::string& isa) {
  FwhtArgs a;
  a.src = as_ptr<const void>(src);
  a.dst = as_ptr<void>(dst);
  a.rows = rows;
  a.n = n;
  a.src_row_stride = src_row_stride;
  a.dst_row_stride = dst_row_stride;
  a.dtype = parse_dtype(dtype);
  a.m = m;
  a.had_m = as_ptr<const float>(had_m);
  a.scale = scale;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  fwht(a, chosen);
}

void selective_state_update_binding(
    uintptr_t state, int64_t state_stride_batch, int64_t state_stride_head,
    int64_t state_stride_dim, uintptr_t x, uintptr_t dt, uintptr_t z, uintptr_t out, uintptr_t A,
    int64_t A_stride_head, int64_t A_stride_dim, int64_t A_stride_dstate, uintptr_t B,
    uintptr_t C, uintptr_t D, uintptr_t dt_bias, int64_t batch, int64_t nheads, int64_t dim,
    int64_t dstate, int64_t ngroups, const std::string& state_dtype, const std::string& x_dtype,
    bool dt_softplus, int threads, const std::string& isa) {
  SsuArgs a;
  a.state = as_ptr<void>(state);
  a.state_stride_batch = state_stride_batch;
  a.state_stride_head = state_stride_head;
  a.state_stride_dim = state_stride_dim;
  a.x = as_ptr<const void>(x);
  a.dt = as_ptr<const void>(dt);
  a.z = as_ptr<const void>(z);
  a.out = as_ptr<void>(out);
  a.A = as_ptr<const void>(A);
  a.A_stride_head = A_stride_head;
  a.A_stride_dim = A_stride_dim;
  a.A_stride_dstate = A_stride_dstate;
  a.B = as_ptr<const void>(B);
  a.C = as_ptr<const void>(C);
  a.D = as_ptr<const void>(D);
  a.dt_bias = as_ptr<const void>(dt_bias);
  a.batch = batch;
  a.nheads = nheads;
  a.dim = dim;
  a.dstate = dstate;
  a.ngroups = ngroups;
  a.state_dtype = parse_dtype(state_dtype);
  a.x_dtype = parse_dtype(x_dtype);
  a.dt_softplus = dt_softplus;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  selective_state_update(a, chosen);
}

py::dict build_info() {
  py::dict info;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  py::list compiled;
  compiled.append("portable");
  if (avx2_compiled()) compiled.append("avx2");
  info["isa_compiled"] = compiled;
  info["isa_in_use"] = isa_name(best_isa());
  const CpuFeatures& f = cpu_features();
  info["cpu_avx2"] = f.avx2;
  info["cpu_fma"] = f.fma;
  info["cpu_f16c"] = f.f16c;
#if defined(_OPENMP)
  info["openmp"] = std::to_string(_OPENMP);
#else
  info["openmp"] = py::none();
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "kernelkit CPU kernels (no torch inside: pointers, sizes and strides in)";
  mod.def("fwht", &fwht_binding, py::arg("src"), py::arg("src_row_stride"), py::arg("dst"),
          py::arg("dst_row_stride"), py::arg("rows"), py::arg("n"), py::arg("dtype"), py::arg("m"),
          py::arg("had_m"), py::arg("scale"), py::arg("threads"), py::arg("isa") = "auto");
  mod.def("selective_state_update", &selective_state_update_binding, py::arg("state"),
          py::arg("state_stride_batch"), py::arg("state_stride_head"),
          py::arg("state_stride_dim"), py::arg("x"), py::arg("dt"), py::arg("z"), py::arg("out"),
          py::arg("A"), py::arg("A_stride_head"), py::arg("A_stride_dim"),
          py::arg("A_stride_dstate"), py::arg("B"), py::arg("C"), py::arg("D"),
          py::arg("dt_bias"), py::arg("batch"), py::arg("nheads"), py::arg("dim"),
          py::arg("dstate"), py::arg("ngroups"), py::arg("state_dtype"), py::arg("x_dtype"),
          py::arg("dt_softplus"), py::arg("threads"), py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, size_t nbytes) { advise_huge_pages(as_ptr<void>(address), nbytes); },
      py::arg("address"), py::arg("nbytes"),
      "Hint that a fresh buffer be backed by transparent huge pages (Linux).");
}
