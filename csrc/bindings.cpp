// The only pybind11 file: raw pointers, sizes and strides in, no torch; the GIL is released
// around every kernel.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "gemm/half_conv2d.h"
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

// Geometry of a half_conv2d call; x strides in elements (batch, channel, row, column).
HalfConv2dArgs conv2d_args(uintptr_t x, const std::vector<int64_t>& x_strides,
                           const std::vector<int64_t>& x_shape,
                           const std::vector<int64_t>& weight_shape, int64_t groups,
                           const std::vector<int64_t>& stride,
                           const std::vector<int64_t>& padding,
                           const std::vector<int64_t>& dilation,
                           const std::vector<int64_t>& out_hw, const std::string& dtype,
                           int threads) {
  auto need = [](const std::vector<int64_t>& v, size_t n, const char* name) {
    if (v.size() != n)
      throw std::invalid_argument(std::string("half_conv2d: ") + name + " needs " +
                                  std::to_string(n) + " values");
  };
  need(x_strides, 4, "x_strides");
  need(x_shape, 4, "x_shape");
  need(weight_shape, 4, "weight_shape");
  need(stride, 2, "stride");
  need(padding, 2, "padding");
  need(dilation, 2, "dilation");
  need(out_hw, 2, "out_hw");
  if (weight_shape[1] * groups != x_shape[1])
    throw std::invalid_argument("half_conv2d: weight_shape[1] * groups must equal channels");
  HalfConv2dArgs a;
  a.x = as_ptr<const void>(x);
  std::copy(x_strides.begin(), x_strides.end(), a.x_strides);
  a.batch = x_shape[0];
  a.channels = x_shape[1];
  a.height = x_shape[2];
  a.width = x_shape[3];
  a.out_channels = weight_shape[0];
  a.kh = weight_shape[2];
  a.kw = weight_shape[3];
  a.groups = groups;
  a.stride_h = stride[0];
  a.stride_w = stride[1];
  a.pad_h = padding[0];
  a.pad_w = padding[1];
  a.dilation_h = dilation[0];
  a.dilation_w = dilation[1];
  a.out_h = out_hw[0];
  a.out_w = out_hw[1];
  a.dtype = parse_dtype(dtype);
  a.threads = threads;
  return a;
}

// weight and out contiguous; bias float32 (out_channels,) or 0.
void half_conv2d_forward_binding(uintptr_t x, std::vector<int64_t> x_strides, uintptr_t weight,
                                 uintptr_t bias, uintptr_t out, std::vector<int64_t> x_shape,
                                 std::vector<int64_t> weight_shape, int64_t groups,
                                 std::vector<int64_t> stride, std::vector<int64_t> padding,
                                 std::vector<int64_t> dilation, std::vector<int64_t> out_hw,
                                 const std::string& dtype, int threads, const std::string& isa) {
  HalfConv2dArgs a = conv2d_args(x, x_strides, x_shape, weight_shape, groups, stride, padding,
                                 dilation, out_hw, dtype, threads);
  a.weight = as_ptr<const void>(weight);
  a.bias = as_ptr<const float>(bias);
  a.out = as_ptr<void>(out);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  half_conv2d_forward(a, chosen);
}

// grad (batch, out_channels, out_h, out_w) contiguous; grad_weight float32, contiguous.
void half_conv2d_weight_grad_binding(uintptr_t x, std::vector<int64_t> x_strides, uintptr_t grad,
                                     uintptr_t grad_weight, std::vector<int64_t> x_shape,
                                     std::vector<int64_t> weight_shape, int64_t groups,
                                     std::vector<int64_t> stride, std::vector<int64_t> padding,
                                     std::vector<int64_t> dilation, std::vector<int64_t> out_hw,
                                     const std::string& dtype, int threads,
                                     const std::string& isa) {
  HalfConv2dWeightGradArgs w;
  w.conv = conv2d_args(x, x_strides, x_shape, weight_shape, groups, stride, padding, dilation,
                       out_hw, dtype, threads);
  w.grad = as_ptr<const void>(grad);
  w.grad_weight = as_ptr<float>(grad_weight);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  half_conv2d_weight_grad(w, chosen);
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
  mod.def("half_conv2d_forward", &half_conv2d_forward_binding, py::arg("x"),
          py::arg("x_strides"), py::arg("weight"), py::arg("bias"), py::arg("out"),
          py::arg("x_shape"), py::arg("weight_shape"), py::arg("groups"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("out_hw"), py::arg("dtype"),
          py::arg("threads"), py::arg("isa") = "auto");
  mod.def("half_conv2d_weight_grad", &half_conv2d_weight_grad_binding, py::arg("x"),
          py::arg("x_strides"), py::arg("grad"), py::arg("grad_weight"), py::arg("x_shape"),
          py::arg("weight_shape"), py::arg("groups"), py::arg("stride"), py::arg("padding"),
          py::arg("dilation"), py::arg("out_hw"), py::arg("dtype"), py::arg("threads"),
          py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, size_t nbytes) { advise_huge_pages(as_ptr<void>(address), nbytes); },
      py::arg("address"), py::arg("nbytes"),
      "Hint that a fresh buffer be backed by transparent huge pages (Linux).");
}
