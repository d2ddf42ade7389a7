// The only pybind11 file: raw pointers, sizes and strides in, no torch; the GIL is released
// around every kernel.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "gemm/half_gemm.h"
#include "hadamard/fwht.h"

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

// Strides and batch strides in elements; bias (N,) float32 or 0.
void half_gemm_binding(int64_t batch, int64_t M, int64_t N, int64_t K, uintptr_t a, int64_t a_bs,
                       int64_t a_rs, int64_t a_cs, uintptr_t b, int64_t b_bs, int64_t b_rs,
                       int64_t b_cs, uintptr_t c, int64_t c_bs, int64_t c_rs, int64_t c_cs,
                       const std::string& in_dtype, const std::string& out_dtype, uintptr_t bias,
                       bool bias_per_row, int threads, const std::string& isa) {
  HalfGemmArgs g;
  g.batch = batch;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = MatrixView{as_ptr<const void>(a), a_bs, a_rs, a_cs};
  g.b = MatrixView{as_ptr<const void>(b), b_bs, b_rs, b_cs};
  g.c = as_ptr<void>(c);
  g.c_bs = c_bs;
  g.c_rs = c_rs;
  g.c_cs = c_cs;
  g.in_dtype = parse_dtype(in_dtype);
  g.out_dtype = parse_dtype(out_dtype);
  g.bias = as_ptr<const float>(bias);
  g.bias_per_row = bias_per_row;
  g.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  half_gemm(g, chosen);
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
  mod.def("half_gemm", &half_gemm_binding, py::arg("batch"), py::arg("M"), py::arg("N"),
          py::arg("K"), py::arg("a"), py::arg("a_bs"), py::arg("a_rs"), py::arg("a_cs"),
          py::arg("b"), py::arg("b_bs"), py::arg("b_rs"), py::arg("b_cs"), py::arg("c"),
          py::arg("c_bs"), py::arg("c_rs"), py::arg("c_cs"), py::arg("in_dtype"),
          py::arg("out_dtype"), py::arg("bias"), py::arg("bias_per_row"), py::arg("threads"), py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, size_t nbytes) { advise_huge_pages(as_ptr<void>(address), nbytes); },
      py::arg("address"), py::arg("nbytes"),
      "Hint that a fresh buffer be backed by transparent huge pages (Linux).");
}
