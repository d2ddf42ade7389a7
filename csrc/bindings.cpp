// The only pybind11 file: raw pointers, sizes and strides in, no torch; the GIL is released
// around every kernel.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "hadamard/fwht.h"
#include "scan/delta_rule.h"

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

// delta_rule: (B, T, H, D) views as (pointer, stride_b, stride_t, stride_h) (pointer 0: absent),
// sizes as (B, T, H, d_k, d_v); states are contiguous compute-type (B, H, d_k, d_v) arrays or 0.
using SeqTuple = std::tuple<uintptr_t, int64_t, int64_t, int64_t>;
using SizeTuple = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;

SeqView seq_in(const SeqTuple& t) {
  return {as_ptr<const void>(std::get<0>(t)), std::get<1>(t), std::get<2>(t), std::get<3>(t)};
}

SeqOut seq_out(const SeqTuple& t) {
  return {as_ptr<void>(std::get<0>(t)), std::get<1>(t), std::get<2>(t), std::get<3>(t)};
}

DeltaRuleSizes delta_sizes(const SizeTuple& s) {
  return {std::get<0>(s), std::get<1>(s), std::get<2>(s), std::get<3>(s), std::get<4>(s)};
}

void delta_rule_forward_binding(const SizeTuple& sizes, const std::string& dtype,
                                const SeqTuple& q, const SeqTuple& k, const SeqTuple& v,
                                const SeqTuple& beta, const SeqTuple& o, const SeqTuple& w,
                                uintptr_t h0,
                                uintptr_t last_state, double scale, int threads,
                                const std::string& isa) {
  DeltaRuleForwardArgs a;
  a.n = delta_sizes(sizes);
  a.dtype = parse_dtype(dtype);
  a.q = seq_in(q);
  a.k = seq_in(k);
  a.v = seq_in(v);
  a.beta = seq_in(beta);
  a.o = seq_out(o);
  a.w = seq_out(w);
  a.h0 = as_ptr<const void>(h0);
  a.last_state = as_ptr<void>(last_state);
  a.scale = scale;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  delta_rule_forward(a, chosen);
}

void delta_rule_backward_binding(const SizeTuple& sizes, const std::string& dtype,
                                 const SeqTuple& q, const SeqTuple& k, const SeqTuple& v,
                                 const SeqTuple& beta, const SeqTuple& d_o, const SeqTuple& w,
                                 uintptr_t h0,
                                 uintptr_t d_last, const SeqTuple& dq, const SeqTuple& dk,
                                 const SeqTuple& dv, const SeqTuple& dbeta, uintptr_t dh0,
                                 double scale, int threads, const std::string& isa) {
  DeltaRuleBackwardArgs a;
  a.n = delta_sizes(sizes);
  a.dtype = parse_dtype(dtype);
  a.q = seq_in(q);
  a.k = seq_in(k);
  a.v = seq_in(v);
  a.beta = seq_in(beta);
  a.d_o = seq_in(d_o);
  a.w = seq_in(w);
  a.h0 = as_ptr<const void>(h0);
  a.d_last = as_ptr<const void>(d_last);
  a.dq = seq_out(dq);
  a.dk = seq_out(dk);
  a.dv = seq_out(dv);
  a.dbeta = seq_out(dbeta);
  a.dh0 = as_ptr<void>(dh0);
  a.scale = scale;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  delta_rule_backward(a, chosen);
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
  mod.def("delta_rule_forward", &delta_rule_forward_binding, py::arg("sizes"), py::arg("dtype"),
          py::arg("q"), py::arg("k"), py::arg("v"), py::arg("beta"), py::arg("o"), py::arg("w"),
          py::arg("h0"), py::arg("last_state"), py::arg("scale"), py::arg("threads"),
          py::arg("isa") = "auto");
  mod.def("delta_rule_backward", &delta_rule_backward_binding, py::arg("sizes"),
          py::arg("dtype"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("beta"),
          py::arg("d_o"), py::arg("w"), py::arg("h0"), py::arg("d_last"), py::arg("dq"),
          py::arg("dk"), py::arg("dv"), py::arg("dbeta"), py::arg("dh0"), py::arg("scale"),
          py::arg("threads"), py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, size_t nbytes) { advise_huge_pages(as_ptr<void>(address), nbytes); },
      py::arg("address"), py::arg("nbytes"),
      "Hint that a fresh buffer be backed by transparent huge pages (Linux).");
}
