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

void check_weights(const char* op, const char* name, size_t weights, size_t sources) {
  if (weights != sources)
    throw std::invalid_argument(std::string(op) + ": " + name + " must have one weight per " +
                                "source (" + std::to_string(sources) + "); got " +
                                std::to_string(weights));
}

// A parted call: the state is `part_end.size()` consecutive parts (part p covers
// [part_end[p - 1], part_end[p])) and each source lists one address per part (source j's part
// p at srcs[j * parts + p]), so that a stage held as separate part tensors (the adjoint's
// augmented derivative) is read where it lies. Outputs and y0 / y1 stay whole arrays. No part
// ends: one part, one address per source.
struct Parts {
  std::vector<int64_t> end;

  Parts(const char* op, const std::vector<int64_t>& part_end, int64_t n) : end(part_end) {
    if (end.empty()) end.push_back(n);
    int64_t prev = 0;
    for (const int64_t e : end) {
      if (e < prev) throw std::invalid_argument(std::string(op) + ": part ends must be "
                                                "non-decreasing");
      prev = e;
    }
    if (prev != n)
      throw std::invalid_argument(std::string(op) + ": the last part must end at n (" +
                                  std::to_string(n) + "); got " + std::to_string(prev));
  }
  size_t count() const { return end.size(); }
  int64_t start(size_t p) const { return p == 0 ? 0 : end[p - 1]; }
};

size_t element_size(DType d) { return d == DType::f64 ? sizeof(double) : sizeof(float); }

uintptr_t at_element(uintptr_t base, int64_t i, DType d) {
  return base + uintptr_t(i) * element_size(d);
}

// Part p's address of every source.
std::vector<const void*> part_addresses(const std::vector<uintptr_t>& srcs, size_t parts,
                                        size_t p) {
  std::vector<const void*> out(srcs.size() / parts);
  for (size_t j = 0; j < out.size(); ++j)
    out[j] = reinterpret_cast<const void*>(srcs[j * parts + p]);
  return out;
}

void rk_combine_binding(uintptr_t out, const std::vector<uintptr_t>& srcs,
                        const std::vector<double>& w, int64_t n, const std::string& dtype,
                        int threads, const std::string& isa,
                        const std::vector<int64_t>& part_end) {
  const char* op = "rk_combine";
  const Parts parts(op, part_end, n);
  check_weights(op, "w", w.size() * parts.count(), srcs.size());
  RkCombineArgs a;
  a.w = w.data();
  a.nsrc = int(w.size());
  a.dtype = state_dtype(dtype, op);
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  for (size_t p = 0; p < parts.count(); ++p) {
    const std::vector<const void*> src = part_addresses(srcs, parts.count(), p);
    a.out = reinterpret_cast<void*>(at_element(out, parts.start(p), a.dtype));
    a.srcs = src.data();
    a.n = parts.end[p] - parts.start(p);
    rk_combine(a, chosen);
  }
}

// A stage input from the step's address list: sources ptrs[idx[j]], weights w[0] and
// w[j] * scale (scale = the signed dt, multiplied here in float64 as the Python driver would):
// the driver's hot loop then passes its per-method constants unchanged.
void rk_stage_input_binding(uintptr_t out, const std::vector<uintptr_t>& ptrs,
                            const std::vector<int64_t>& idx, const std::vector<double>& w,
                            double scale, int64_t n, const std::string& dtype, int threads,
                            const std::string& isa, const std::vector<int64_t>& part_end) {
  const char* op = "rk_stage_input";
  check_weights(op, "w", w.size(), idx.size());
  const size_t parts = part_end.empty() ? 1 : part_end.size();
  const int64_t sources = int64_t(ptrs.size() / parts);
  std::vector<uintptr_t> srcs(idx.size() * parts);
  std::vector<double> scaled(w.size());
  for (size_t j = 0; j < idx.size(); ++j) {
    if (idx[j] < 0 || idx[j] >= sources)
      throw std::invalid_argument(std::string(op) + ": idx[" + std::to_string(j) + "] = " +
                                  std::to_string(idx[j]) + " is outside ptrs (" +
                                  std::to_string(sources) + " sources)");
    for (size_t p = 0; p < parts; ++p) srcs[j * parts + p] = ptrs[size_t(idx[j]) * parts + p];
    scaled[j] = j == 0 ? w[j] : w[j] * scale;
  }
  rk_combine_binding(out, srcs, scaled, n, dtype, threads, isa, part_end);
}

void rk_step_end_binding(uintptr_t y0, uintptr_t y1, bool write_y1,
                         const std::vector<uintptr_t>& ks, const std::vector<double>& b,
                         const std::vector<double>& e, double rtol, double atol,
                         const std::vector<int64_t>& seg_end, int64_t n,
                         const std::string& dtype, uintptr_t stats, int threads,
                         const std::string& isa, const std::vector<int64_t>& part_end) {
  const char* op = "rk_step_end";
  const Parts parts(op, part_end, n);
  if (write_y1) check_weights(op, "b", b.size() * parts.count(), ks.size());
  check_weights(op, "e", e.size() * parts.count(), ks.size());
  RkStepEndArgs a;
  a.write_y1 = write_y1;
  a.b = b.data();
  a.e = e.data();
  a.nk = int(e.size());
  a.rtol = rtol;
  a.atol = atol;
  a.dtype = state_dtype(dtype, op);
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  // each part runs its own segments (those ending inside it): a part boundary must be a
  // segment boundary; the chunks of a segment, and so its sums, are those of one whole call
  std::vector<int64_t> local;
  size_t s = 0;
  py::gil_scoped_release release;
  for (size_t p = 0; p < parts.count(); ++p) {
    const int64_t start = parts.start(p);
    const size_t first = s;
    local.clear();
    for (; s < seg_end.size() && seg_end[s] <= parts.end[p]; ++s)
      local.push_back(seg_end[s] - start);
    if (local.empty()) {
      if (parts.end[p] == start) continue;
      throw std::invalid_argument(std::string(op) + ": part " + std::to_string(p) +
                                  " holds no segment end");
    }
    if (local.back() != parts.end[p] - start)
      throw std::invalid_argument(std::string(op) + ": part end " +
                                  std::to_string(parts.end[p]) + " is not a segment end");
    const std::vector<const void*> k = part_addresses(ks, parts.count(), p);
    a.y0 = reinterpret_cast<const void*>(at_element(y0, start, a.dtype));
    a.y1 = reinterpret_cast<void*>(at_element(y1, start, a.dtype));
    a.ks = k.data();
    a.seg_end = local.data();
    a.nseg = int(local.size());
    a.n = parts.end[p] - start;
    a.stats = reinterpret_cast<double*>(stats) + 2 * first;
    rk_step_end(a, chosen);
  }
  if (s != seg_end.size())
    throw std::invalid_argument(std::string(op) + ": segment ends past the last part");
}

}  // namespace

void bind_ode(py::module_& mod) {
  def_kernel(mod, "rk_combine", &rk_combine_binding, py::arg("out"), py::arg("srcs"),
             py::arg("w"), py::arg("n"), py::arg("dtype"), py::arg("threads"),
             py::arg("isa") = "auto", py::arg("part_end") = std::vector<int64_t>{},
             "out = w[0] * srcs[0] + sum_{j>=1} w[j] * srcs[j] over n contiguous values "
             "(part_end: each source as one address per part)");
  def_kernel(mod, "rk_stage_input", &rk_stage_input_binding, py::arg("out"), py::arg("ptrs"),
             py::arg("idx"), py::arg("w"), py::arg("scale"), py::arg("n"), py::arg("dtype"),
             py::arg("threads"), py::arg("isa") = "auto",
             py::arg("part_end") = std::vector<int64_t>{},
             "out = w[0] * ptrs[idx[0]] + sum_{j>=1} (w[j] * scale) * ptrs[idx[j]] "
             "(part_end: each source as one address per part)");
  def_kernel(mod, "rk_step_end", &rk_step_end_binding, py::arg("y0"), py::arg("y1"),
             py::arg("write_y1"), py::arg("ks"), py::arg("b"), py::arg("e"), py::arg("rtol"),
             py::arg("atol"), py::arg("seg_end"), py::arg("n"), py::arg("dtype"),
             py::arg("stats"), py::arg("threads"), py::arg("isa") = "auto",
             py::arg("part_end") = std::vector<int64_t>{},
             "A Runge-Kutta step's solution, error estimate and per-segment sums of squared "
             "scaled errors (stats[2s]) and of 0 * y1 (stats[2s+1]) in one pass (part_end: "
             "each k as one address per part; part ends are segment ends)");
}

}  // namespace kernelkit
