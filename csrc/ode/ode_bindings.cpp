// pybind11 bindings of the ODE family's kernels (bind_ode, called from csrc/bindings.cpp):
// addresses of contiguous state-sized arrays in, weights as Python floats (float64).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_binding.h"
#include "ode/rk_step.h"

namespace py = pybind11;

namespace kernelkit {
namespace {

DType state_dtype(const std::string& name, const char* op) {
  const DType d = parse_float_dtype(name, op);
  if (d != DType::f32 && d != DType::f64)
    throw std::invalid_argument(std::string(op) + ": dtype must be float32 or float64; got " +
                                name);
  return d;
}

std::vector<const void*> addresses(const std::vector<uintptr_t>& v) {
  std::vector<const void*> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = reinterpret_cast<const void*>(v[i]);
  return out;
}

void check_weights(const char* op, const char* name, size_t weights, size_t sources) {
  if (weights != sources)
    throw std::invalid_argument(std::string(op) + ": " + name + " must have one weight per " +
                                "source (" + std::to_string(sources) + "); got " +
                                std::to_string(weights));
}

void rk_combine_binding(uintptr_t out, const std::vector<uintptr_t>& srcs,
                        const std::vector<double>& w, int64_t n, const std::string& dtype,
                        int threads, const std::string& isa) {
  check_weights("rk_combine", "w", w.size(), srcs.size());
  const std::vector<const void*> src = addresses(srcs);
  RkCombineArgs a;
  a.out = reinterpret_cast<void*>(out);
  a.srcs = src.data();
  a.w = w.data();
  a.nsrc = int(src.size());
  a.n = n;
  a.dtype = state_dtype(dtype, "rk_combine");
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  rk_combine(a, chosen);
}

// A stage input from the step's address list: sources ptrs[idx[j]], weights w[0] and
// w[j] * scale (scale = the signed dt, multiplied here in float64 as the Python driver would):
// the driver's hot loop then passes its per-method constants unchanged.
void rk_stage_input_binding(uintptr_t out, const std::vector<uintptr_t>& ptrs,
                            const std::vector<int64_t>& idx, const std::vector<double>& w,
                            double scale, int64_t n, const std::string& dtype, int threads,
                            const std::string& isa) {
  const char* op = "rk_stage_input";
  check_weights(op, "w", w.size(), idx.size());
  std::vector<uintptr_t> srcs(idx.size());
  std::vector<double> scaled(w.size());
  for (size_t j = 0; j < idx.size(); ++j) {
    if (idx[j] < 0 || idx[j] >= int64_t(ptrs.size()))
      throw std::invalid_argument(std::string(op) + ": idx[" + std::to_string(j) + "] = " +
                                  std::to_string(idx[j]) + " is outside ptrs (" +
                                  std::to_string(ptrs.size()) + " addresses)");
    srcs[j] = ptrs[size_t(idx[j])];
    scaled[j] = j == 0 ? w[j] : w[j] * scale;
  }
  rk_combine_binding(out, srcs, scaled, n, dtype, threads, isa);
}

void rk_step_end_binding(uintptr_t y0, uintptr_t y1, bool write_y1,
                         const std::vector<uintptr_t>& ks, const std::vector<double>& b,
                         const std::vector<double>& e, double rtol, double atol,
                         const std::vector<int64_t>& seg_end, int64_t n,
                         const std::string& dtype, uintptr_t stats, int threads,
                         const std::string& isa) {
  const char* op = "rk_step_end";
  if (write_y1) check_weights(op, "b", b.size(), ks.size());
  check_weights(op, "e", e.size(), ks.size());
  const std::vector<const void*> k = addresses(ks);
  RkStepEndArgs a;
  a.y0 = reinterpret_cast<const void*>(y0);
  a.y1 = reinterpret_cast<void*>(y1);
  a.write_y1 = write_y1;
  a.ks = k.data();
  a.b = b.data();
  a.e = e.data();
  a.nk = int(k.size());
  a.rtol = rtol;
  a.atol = atol;
  a.seg_end = seg_end.data();
  a.nseg = int(seg_end.size());
  a.n = n;
  a.dtype = state_dtype(dtype, op);
  a.stats = reinterpret_cast<double*>(stats);
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  rk_step_end(a, chosen);
}

}  // namespace

void bind_ode(py::module_& mod) {
  def_kernel(mod, "rk_combine", &rk_combine_binding, py::arg("out"), py::arg("srcs"),
             py::arg("w"), py::arg("n"), py::arg("dtype"), py::arg("threads"),
             py::arg("isa") = "auto",
             "out = w[0] * srcs[0] + sum_{j>=1} w[j] * srcs[j] over n contiguous values");
  def_kernel(mod, "rk_stage_input", &rk_stage_input_binding, py::arg("out"), py::arg("ptrs"),
             py::arg("idx"), py::arg("w"), py::arg("scale"), py::arg("n"), py::arg("dtype"),
             py::arg("threads"), py::arg("isa") = "auto",
             "out = w[0] * ptrs[idx[0]] + sum_{j>=1} (w[j] * scale) * ptrs[idx[j]]");
  def_kernel(mod, "rk_step_end", &rk_step_end_binding, py::arg("y0"), py::arg("y1"),
             py::arg("write_y1"), py::arg("ks"), py::arg("b"), py::arg("e"), py::arg("rtol"),
             py::arg("atol"), py::arg("seg_end"), py::arg("n"), py::arg("dtype"),
             py::arg("stats"), py::arg("threads"), py::arg("isa") = "auto",
             "A Runge-Kutta step's solution, error estimate and per-segment sums of squared "
             "scaled errors (stats[2s]) and of 0 * y1 (stats[2s+1]) in one pass");
}

}  // namespace kernelkit
