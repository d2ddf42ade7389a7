// pybind11 bindings of the sparse WHT (SPRIGHT) kernels: raw pointers in, no torch; the GIL is
// released around every kernel. Registered by csrc/bindings.cpp through bind_sparse_wht.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "hadamard/sparse_wht.h"
#include "kernel_binding.h"

namespace py = pybind11;

namespace kernelkit {

namespace {

template <class T> T* ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

SparseWhtPlan plan_of(int n, int b, int groups, int chains, uintptr_t cols, uintptr_t delays) {
  SparseWhtPlan p;
  p.n = n;
  p.b = b;
  p.groups = groups;
  p.chains = chains;
  p.cols = ptr<const int64_t>(cols);
  p.delays = ptr<const int64_t>(delays);
  return p;
}

void indices_binding(int n, int b, int groups, int chains, uintptr_t cols, uintptr_t delays,
                     uintptr_t out) {
  const SparseWhtPlan p = plan_of(n, b, groups, chains, cols, delays);
  py::gil_scoped_release release;
  sparse_wht_indices(p, ptr<int64_t>(out));
}

void front_binding(int n, int b, int groups, int chains, uintptr_t cols, uintptr_t delays,
                   uintptr_t signal, int64_t length, bool gathered, const std::string& dtype,
                   uintptr_t U, int threads, const std::string& isa) {
  SparseWhtFrontArgs a;
  a.plan = plan_of(n, b, groups, chains, cols, delays);
  a.signal = ptr<const void>(signal);
  a.length = length;
  a.gathered = gathered;
  if (dtype == "float32")
    a.dtype = DType::f32;
  else if (dtype == "float64")
    a.dtype = DType::f64;
  else
    throw std::invalid_argument("sparse_wht_front: dtype must be float32 or float64; got " +
                                dtype);
  a.U = ptr<double>(U);
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  sparse_wht_front(a, chosen);
}

void decode_binding(int n, int b, int groups, int chains, uintptr_t cols, uintptr_t delays,
                    uintptr_t U, double sigma, bool auto_noise, double floor_rel,
                    int64_t max_peel, uintptr_t out_indices, uintptr_t out_values,
                    uintptr_t stats, const std::string& isa) {
  SparseWhtDecodeArgs a;
  a.plan = plan_of(n, b, groups, chains, cols, delays);
  a.U = ptr<const double>(U);
  a.sigma = sigma;
  a.auto_noise = auto_noise;
  a.floor_rel = floor_rel;
  a.max_peel = max_peel;
  a.out_indices = ptr<int64_t>(out_indices);
  a.out_values = ptr<double>(out_values);
  a.stats = ptr<double>(stats);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  sparse_wht_decode(a, chosen);
}

}  // namespace

void bind_sparse_wht(py::module_& mod) {
  def_kernel(mod, "sparse_wht_indices", &indices_binding, py::arg("n"), py::arg("b"),
             py::arg("groups"), py::arg("chains"), py::arg("cols"), py::arg("delays"),
             py::arg("out"));
  def_kernel(mod, "sparse_wht_front", &front_binding, py::arg("n"), py::arg("b"),
             py::arg("groups"), py::arg("chains"), py::arg("cols"), py::arg("delays"),
             py::arg("signal"), py::arg("length"), py::arg("gathered"), py::arg("dtype"),
             py::arg("U"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "sparse_wht_decode", &decode_binding, py::arg("n"), py::arg("b"),
             py::arg("groups"), py::arg("chains"), py::arg("cols"), py::arg("delays"),
             py::arg("U"), py::arg("sigma"), py::arg("auto_noise"), py::arg("floor_rel"),
             py::arg("max_peel"), py::arg("out_indices"), py::arg("out_values"),
             py::arg("stats"), py::arg("isa") = "auto");
}

}  // namespace kernelkit
