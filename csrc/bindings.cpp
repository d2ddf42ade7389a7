// The only pybind11 file: raw pointers, sizes and strides in, no torch; the GIL is released
// around every kernel.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "hadamard/fwht.h"
#include "scan/selective_scan.h"

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

// Selective scan: every tensor contiguous, pointers as integers (0 = absent). sizes =
// (batch, dim, L, N, groups_b, groups_c), dtypes = (u's, B's, C's); inputs = (u, delta, A, B,
// C, D, z, delta_bias, h0); for the backward, extra = (grad_out, grad_last_state) and outputs
// = (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0); for the forward, outputs = (out,
// last_state).
SelectiveScanArgs selective_scan_args(const std::vector<int64_t>& sizes,
                                      const std::vector<std::string>& dtypes,
                                      const std::vector<uintptr_t>& inputs, bool softplus,
                                      bool negative, int threads) {
  if (sizes.size() != 6 || dtypes.size() != 3 || inputs.size() != 9)
    throw std::invalid_argument("selective_scan: expected 6 sizes, 3 dtypes and 9 inputs");
  SelectiveScanArgs a;
  a.batch = sizes[0]; a.dim = sizes[1]; a.length = sizes[2]; a.n_state = sizes[3];
  a.groups_b = sizes[4]; a.groups_c = sizes[5];
  a.dtype = parse_dtype(dtypes[0]); a.b_dtype = parse_dtype(dtypes[1]);
  a.c_dtype = parse_dtype(dtypes[2]);
  const void** slots[] = {&a.u, &a.delta, &a.A, &a.B, &a.C, &a.D, &a.z, &a.delta_bias, &a.h0};
  for (size_t i = 0; i < inputs.size(); ++i) *slots[i] = as_ptr<const void>(inputs[i]);
  a.softplus = softplus;
  a.negative_eigenvalues = negative;
  a.threads = threads;
  return a;
}

void selective_scan_fwd_binding(const std::vector<int64_t>& sizes,
                                const std::vector<std::string>& dtypes,
                                const std::vector<uintptr_t>& inputs,
                                const std::vector<uintptr_t>& outputs, bool softplus,
                                bool negative, int threads, const std::string& isa) {
  const SelectiveScanArgs a = selective_scan_args(sizes, dtypes, inputs, softplus, negative, threads);
  if (outputs.size() != 2) throw std::invalid_argument("selective_scan_fwd: expected 2 outputs");
  SelectiveScanOutputs o;
  o.out = as_ptr<void>(outputs[0]);
  o.last_state = as_ptr<void>(outputs[1]);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  selective_scan_fwd(a, o, chosen);
}

void selective_scan_bwd_binding(const std::vector<int64_t>& sizes,
                                const std::vector<std::string>& dtypes,
                                const std::vector<uintptr_t>& inputs,
                                const std::vector<uintptr_t>& outputs, bool softplus,
                                bool negative, int threads, const std::string& isa) {
  if (inputs.size() != 11 || outputs.size() != 9)
    throw std::invalid_argument("selective_scan_bwd: expected 11 inputs and 9 outputs");
  const std::vector<uintptr_t> fwd_inputs(inputs.begin(), inputs.begin() + 9);
  const SelectiveScanArgs a =
      selective_scan_args(sizes, dtypes, fwd_inputs, softplus, negative, threads);
  SelectiveScanGrads g;
  g.grad_out = as_ptr<const void>(inputs[9]);
  g.grad_last_state = as_ptr<const void>(inputs[10]);
  void** slots[] = {&g.du, &g.ddelta, &g.dA, &g.dB, &g.dC, &g.dD, &g.dz, &g.ddelta_bias, &g.dh0};
  for (size_t i = 0; i < outputs.size(); ++i) *slots[i] = as_ptr<void>(outputs[i]);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  selective_scan_bwd(a, g, chosen);
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
  mod.def("selective_scan_fwd", &selective_scan_fwd_binding, py::arg("sizes"), py::arg("dtypes"),
          py::arg("inputs"), py::arg("outputs"), py::arg("softplus"), py::arg("negative"),
          py::arg("threads"), py::arg("isa") = "auto");
  mod.def("selective_scan_bwd", &selective_scan_bwd_binding, py::arg("sizes"), py::arg("dtypes"),
          py::arg("inputs"), py::arg("outputs"), py::arg("softplus"), py::arg("negative"),
          py::arg("threads"), py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, size_t nbytes) { advise_huge_pages(as_ptr<void>(address), nbytes); },
      py::arg("address"), py::arg("nbytes"),
      "Hint that a fresh buffer be backed by transparent huge pages (Linux).");
}
