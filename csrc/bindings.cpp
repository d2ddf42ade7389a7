// pybind11 module: raw pointers, sizes and strides in, no torch; the GIL is released around
// every kernel. Families with many ops keep their bindings in their own file (bind_<family>).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/cpu_features.h"
#include "common/memory.h"
#include "binary/binary_isa.h"
#include "kernel_binding.h"
#include "gemm/half_conv2d.h"
#include "gemm/half_gemm.h"
#include "hadamard/fwht.h"
#include "scan/delta_rule.h"
#include "scan/linear_scan_2d.h"
#include "scan/linear_scan.h"
#include "scan/selective_scan.h"
#include "scan/selective_state_update.h"
#include "schedulers/randn_philox.h"
#include "schedulers/scheduler_step.h"

namespace py = pybind11;
using namespace kernelkit;

namespace kernelkit {
void bind_binary(py::module_& mod);  // csrc/binary/binary_bindings.cpp
void bind_sparse_wht(py::module_& mod);  // csrc/hadamard/sparse_wht_bindings.cpp
void bind_ode(py::module_& mod);  // csrc/ode/ode_bindings.cpp
}  // namespace kernelkit

namespace {

template <class T> T* as_ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

DType parse_dtype(const std::string& name) { return parse_float_dtype(name); }

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

// One tensor argument of linear_scan_2d: (address, batch stride, row stride); address 0 = absent.
using Strided = std::tuple<uintptr_t, int64_t, int64_t>;

LinearScan2dArgs scan2d_args(int64_t batch, int64_t T, int64_t V, const std::string& dtype,
                             const Strided& a_t, const Strided& a_v, const Strided& h0_t,
                             const Strided& h0_v, int threads) {
  LinearScan2dArgs s;
  s.batch = batch;
  s.T = T;
  s.V = V;
  s.dtype = parse_dtype(dtype);
  s.a_t = {as_ptr<const void>(std::get<0>(a_t)), std::get<1>(a_t), std::get<2>(a_t)};
  s.a_v = {as_ptr<const void>(std::get<0>(a_v)), std::get<1>(a_v), std::get<2>(a_v)};
  s.h0_t = {as_ptr<const void>(std::get<0>(h0_t)), std::get<1>(h0_t), std::get<2>(h0_t)};
  s.h0_v = {as_ptr<const void>(std::get<0>(h0_v)), std::get<1>(h0_v), std::get<2>(h0_v)};
  s.threads = threads;
  return s;
}

Scan2dPlane plane(const Strided& p) {
  return {as_ptr<const void>(std::get<0>(p)), std::get<1>(p), std::get<2>(p)};
}
Scan2dOut out_plane(const Strided& p) {
  return {as_ptr<void>(std::get<0>(p)), std::get<1>(p), std::get<2>(p)};
}

// h0_t / h0_v are (address, batch stride, element stride).
void linear_scan_2d_binding(int64_t batch, int64_t T, int64_t V, const std::string& dtype,
                            Strided a_t, Strided a_v, Strided x, Strided h0_t, Strided h0_v,
                            Strided h, int threads, const std::string& isa) {
  LinearScan2dForward a;
  a.s = scan2d_args(batch, T, V, dtype, a_t, a_v, h0_t, h0_v, threads);
  a.x = plane(x);
  a.h = out_plane(h);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  linear_scan_2d_forward(a, chosen);
}

void linear_scan_2d_backward_binding(int64_t batch, int64_t T, int64_t V,
                                     const std::string& dtype, Strided a_t, Strided a_v,
                                     Strided grad, Strided h, Strided h0_t, Strided h0_v,
                                     Strided dx, Strided da_t, Strided da_v, int threads,
                                     const std::string& isa) {
  LinearScan2dBackward a;
  a.s = scan2d_args(batch, T, V, dtype, a_t, a_v, h0_t, h0_v, threads);
  a.grad = plane(grad);
  a.h = plane(h);
  a.dx = out_plane(dx);
  a.da_t = out_plane(da_t);
  a.da_v = out_plane(da_v);
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  linear_scan_2d_backward(a, chosen);
}

// linear_scan's dtype names: the real ones, or complex64 / complex128 (pairs of f32 / f64).
bool is_complex_name(const std::string& dtype) {
  return dtype == "complex64" || dtype == "complex128";
}

DType scan_element_dtype(const std::string& dtype) {
  if (!is_complex_name(dtype)) return parse_dtype(dtype);
  return dtype == "complex64" ? DType::f32 : DType::f64;
}

// Operands as (address, s0, st, s1) over (n0, len, n1); h0 as (address, s0, s1), address 0
// for zeros. dtype names a real dtype or complex64 / complex128.
void linear_scan_binding(uintptr_t a, int64_t a_s0, int64_t a_st, int64_t a_s1, uintptr_t x,
                         int64_t x_s0, int64_t x_st, int64_t x_s1, uintptr_t out, int64_t o_s0,
                         int64_t o_st, int64_t o_s1, uintptr_t h0, int64_t h0_s0, int64_t h0_s1,
                         int64_t n0, int64_t len, int64_t n1, const std::string& dtype,
                         bool reverse, bool conj_a, int threads, const std::string& isa) {
  LinearScanArgs s;
  s.a = as_ptr<const void>(a);
  s.x = as_ptr<const void>(x);
  s.out = as_ptr<void>(out);
  s.h0 = as_ptr<const void>(h0);
  s.a_strides = {a_s0, a_st, a_s1};
  s.x_strides = {x_s0, x_st, x_s1};
  s.out_strides = {o_s0, o_st, o_s1};
  s.h0_s0 = h0_s0;
  s.h0_s1 = h0_s1;
  s.n0 = n0;
  s.len = len;
  s.n1 = n1;
  s.is_complex = is_complex_name(dtype);
  s.dtype = scan_element_dtype(dtype);
  s.reverse = reverse;
  s.conj_a = conj_a;
  s.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  linear_scan(s, chosen);
}

// The backward: a, grad, h, dx, da as (address, s0, st, s1); h0 (address 0: zeros) and dh0 as
// (address, s0, s1).
void linear_scan_backward_binding(
    uintptr_t a, int64_t a_s0, int64_t a_st, int64_t a_s1, uintptr_t grad, int64_t g_s0,
    int64_t g_st, int64_t g_s1, uintptr_t h, int64_t h_s0, int64_t h_st, int64_t h_s1,
    uintptr_t dx, int64_t dx_s0, int64_t dx_st, int64_t dx_s1, uintptr_t da, int64_t da_s0,
    int64_t da_st, int64_t da_s1, uintptr_t h0, int64_t h0_s0, int64_t h0_s1, uintptr_t dh0,
    int64_t dh0_s0, int64_t dh0_s1, int64_t n0, int64_t len, int64_t n1,
    const std::string& dtype, bool reverse, int threads, const std::string& isa) {
  LinearScanBackwardArgs s;
  s.a = as_ptr<const void>(a);
  s.grad = as_ptr<const void>(grad);
  s.h = as_ptr<const void>(h);
  s.dx = as_ptr<void>(dx);
  s.da = as_ptr<void>(da);
  s.a_strides = {a_s0, a_st, a_s1};
  s.grad_strides = {g_s0, g_st, g_s1};
  s.h_strides = {h_s0, h_st, h_s1};
  s.dx_strides = {dx_s0, dx_st, dx_s1};
  s.da_strides = {da_s0, da_st, da_s1};
  s.h0 = as_ptr<const void>(h0);
  s.h0_s0 = h0_s0;
  s.h0_s1 = h0_s1;
  s.dh0 = as_ptr<void>(dh0);
  s.dh0_s0 = dh0_s0;
  s.dh0_s1 = dh0_s1;
  s.n0 = n0;
  s.len = len;
  s.n1 = n1;
  s.is_complex = is_complex_name(dtype);
  s.dtype = scan_element_dtype(dtype);
  s.reverse = reverse;
  s.threads = threads;
  const Isa chosen = parse_isa(isa);
  py::gil_scoped_release release;
  linear_scan_backward(s, chosen);
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
  const Isa chosen = parse_isa_avx2_where_zmm_halved(isa);
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
  const Isa chosen = parse_isa_avx2_where_zmm_halved(isa);
  py::gil_scoped_release release;
  delta_rule_backward(a, chosen);
}

// The fused scheduler step (schedulers/scheduler_step.h): addresses (0 = absent), the element
// count, the sample dtype and the coefficients; hist0..hist3 are the first n_hist histories.
void scheduler_step_binding(uintptr_t x, uintptr_t m, uintptr_t aux, uintptr_t h0, uintptr_t h1,
                            uintptr_t h2, uintptr_t h3, int n_hist, uintptr_t out,
                            uintptr_t store, int64_t n, const std::string& dtype, double p_x,
                            double p_m, double c_x, double c_conv, double c_aux, double c0,
                            double c1, double c2, double c3, int threads,
                            const std::string& isa) {
  SchedulerStepArgs a;
  a.x = as_ptr<const void>(x);
  a.m = as_ptr<const void>(m);
  a.aux = as_ptr<const void>(aux);
  const uintptr_t hist[] = {h0, h1, h2, h3};
  const double c[] = {c0, c1, c2, c3};
  for (int k = 0; k < kSchedulerMaxHistory; ++k) {
    a.hist[k] = as_ptr<const void>(hist[k]);
    a.c_hist[k] = c[k];
  }
  a.n_hist = n_hist;
  a.out = as_ptr<void>(out);
  a.store = as_ptr<void>(store);
  a.n = n;
  a.dtype = parse_float_dtype(dtype, "scheduler_step");
  a.p_x = p_x;
  a.p_m = p_m;
  a.c_x = c_x;
  a.c_conv = c_conv;
  a.c_aux = c_aux;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  if (n < (int64_t(1) << 16)) return scheduler_step(a, chosen);  // shorter than a GIL handoff
  py::gil_scoped_release release;
  scheduler_step(a, chosen);
}

// Philox normals into n contiguous values of out (schedulers/randn_philox.h).
void randn_philox_binding(uintptr_t out, int64_t n, const std::string& dtype, uint64_t seed,
                          uint64_t offset, int threads, const std::string& isa) {
  RandnPhiloxArgs a;
  a.out = as_ptr<void>(out);
  a.n = n;
  a.dtype = parse_float_dtype(dtype, "randn_philox");
  a.seed = seed;
  a.offset = offset;
  a.threads = threads;
  const Isa chosen = parse_isa(isa);
  if (n < (int64_t(1) << 12)) return randn_philox(a, chosen);  // shorter than a GIL handoff
  py::gil_scoped_release release;
  randn_philox(a, chosen);
}

// The path each op runs when `requested` is asked for: the best one built for it, at most the
// request (every op has an AVX-512 build; the binary family's also needs VPOPCNTDQ and
// BITALG; delta_rule's "auto" is AVX2 where zmm is double-pumped). Keep in step with each op's
// dispatch.
py::dict isa_per_op(const std::string& requested) {
  const Isa isa = parse_isa(requested);
  const Isa binary = binary_isa(isa);
  const Isa delta = parse_isa_avx2_where_zmm_halved(requested);
  const std::pair<const char*, Isa> ops[] = {
      {"fwht", isa},                    {"selective_scan", isa},
      {"selective_state_update", isa}, {"linear_scan", isa},
      {"linear_scan_2d", isa}, {"delta_rule", delta},
      {"half_matmul", isa},             {"half_linear", isa},
      {"half_conv2d", isa},             {"quantizers", binary},
      {"pack_signs", binary},           {"unpack_signs", binary},
      {"binary_matmul", binary},        {"binary_linear", binary},
      {"binary_conv2d", binary},        {"bi_attention", binary},
      {"sparse_wht", isa},  // its decoder (the front end's transforms are fwht's)
      {"odeint", isa},
      {"scheduler_step", isa},
      {"randn_philox", isa}};
  py::dict out;
  for (const auto& [op, path] : ops) out[op] = isa_name(path);
  return out;
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
  if (avx512_compiled()) compiled.append("avx512");
  info["isa_compiled"] = compiled;
  info["isa_in_use"] = isa_name(best_isa());
  info["amx_bf16_in_use"] = amx_bf16_usable();
  const CpuFeatures& f = cpu_features();
  info["cpu_avx2"] = f.avx2;
  info["cpu_fma"] = f.fma;
  info["cpu_f16c"] = f.f16c;
  py::dict cpu;
  const std::pair<const char*, bool> flags[] = {
      {"avx2", f.avx2}, {"fma", f.fma}, {"f16c", f.f16c}, {"bmi2", f.bmi2}, {"popcnt", f.popcnt},
      {"os_ymm", f.os_ymm}, {"os_zmm", f.os_zmm}, {"avx512f", f.avx512f},
      {"avx512bw", f.avx512bw}, {"avx512vl", f.avx512vl}, {"avx512dq", f.avx512dq},
      {"avx512_vpopcntdq", f.avx512_vpopcntdq}, {"avx512_bitalg", f.avx512_bitalg},
      {"avx512_vnni", f.avx512_vnni}, {"avx512_bf16", f.avx512_bf16},
      {"avx512_fp16", f.avx512_fp16}, {"amx_tile", f.amx_tile}, {"amx_bf16", f.amx_bf16},
      {"amx_int8", f.amx_int8}, {"zmm_double_pumped", f.zmm_double_pumped}};
  for (const auto& [name, present] : flags) cpu[name] = present;
  info["cpu_features"] = cpu;
  py::list usable;
  usable.append("portable");
  if (avx2_usable()) usable.append("avx2");
  if (avx512_usable()) usable.append("avx512");
  info["isa_usable"] = usable;
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
  def_kernel(mod, "fwht", &fwht_binding, py::arg("src"), py::arg("src_row_stride"), py::arg("dst"),
          py::arg("dst_row_stride"), py::arg("rows"), py::arg("n"), py::arg("dtype"), py::arg("m"),
          py::arg("had_m"), py::arg("scale"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "linear_scan_2d", &linear_scan_2d_binding, py::arg("batch"), py::arg("T"),
          py::arg("V"), py::arg("dtype"), py::arg("a_t"), py::arg("a_v"), py::arg("x"),
          py::arg("h0_t"), py::arg("h0_v"), py::arg("h"), py::arg("threads"),
          py::arg("isa") = "auto");
  def_kernel(mod, "linear_scan_2d_backward", &linear_scan_2d_backward_binding, py::arg("batch"),
          py::arg("T"), py::arg("V"), py::arg("dtype"), py::arg("a_t"), py::arg("a_v"),
          py::arg("grad"), py::arg("h"), py::arg("h0_t"), py::arg("h0_v"), py::arg("dx"),
          py::arg("da_t"), py::arg("da_v"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "linear_scan", &linear_scan_binding,
          py::arg("a"), py::arg("a_s0"), py::arg("a_st"),
          py::arg("a_s1"), py::arg("x"), py::arg("x_s0"), py::arg("x_st"), py::arg("x_s1"),
          py::arg("out"), py::arg("out_s0"), py::arg("out_st"), py::arg("out_s1"), py::arg("h0"),
          py::arg("h0_s0"), py::arg("h0_s1"), py::arg("n0"), py::arg("len"), py::arg("n1"),
          py::arg("dtype"), py::arg("reverse"), py::arg("conj_a"), py::arg("threads"),
          py::arg("isa") = "auto");
  def_kernel(mod, "linear_scan_backward", &linear_scan_backward_binding,
          py::arg("a"), py::arg("a_s0"),
          py::arg("a_st"), py::arg("a_s1"), py::arg("grad"), py::arg("grad_s0"),
          py::arg("grad_st"), py::arg("grad_s1"), py::arg("h"), py::arg("h_s0"), py::arg("h_st"),
          py::arg("h_s1"), py::arg("dx"), py::arg("dx_s0"), py::arg("dx_st"), py::arg("dx_s1"),
          py::arg("da"), py::arg("da_s0"), py::arg("da_st"), py::arg("da_s1"), py::arg("h0"),
          py::arg("h0_s0"), py::arg("h0_s1"), py::arg("dh0"), py::arg("dh0_s0"),
          py::arg("dh0_s1"), py::arg("n0"), py::arg("len"), py::arg("n1"), py::arg("dtype"),
          py::arg("reverse"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "selective_state_update", &selective_state_update_binding, py::arg("state"),
          py::arg("state_stride_batch"), py::arg("state_stride_head"),
          py::arg("state_stride_dim"), py::arg("x"), py::arg("dt"), py::arg("z"), py::arg("out"),
          py::arg("A"), py::arg("A_stride_head"), py::arg("A_stride_dim"),
          py::arg("A_stride_dstate"), py::arg("B"), py::arg("C"), py::arg("D"),
          py::arg("dt_bias"), py::arg("batch"), py::arg("nheads"), py::arg("dim"),
          py::arg("dstate"), py::arg("ngroups"), py::arg("state_dtype"), py::arg("x_dtype"),
          py::arg("dt_softplus"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "half_gemm", &half_gemm_binding, py::arg("batch"), py::arg("M"), py::arg("N"),
          py::arg("K"), py::arg("a"), py::arg("a_bs"), py::arg("a_rs"), py::arg("a_cs"),
          py::arg("b"), py::arg("b_bs"), py::arg("b_rs"), py::arg("b_cs"), py::arg("c"),
          py::arg("c_bs"), py::arg("c_rs"), py::arg("c_cs"), py::arg("in_dtype"),
          py::arg("out_dtype"), py::arg("bias"), py::arg("bias_per_row"), py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "half_conv2d_forward", &half_conv2d_forward_binding, py::arg("x"),
          py::arg("x_strides"), py::arg("weight"), py::arg("bias"), py::arg("out"),
          py::arg("x_shape"), py::arg("weight_shape"), py::arg("groups"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("out_hw"), py::arg("dtype"),
          py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "half_conv2d_weight_grad", &half_conv2d_weight_grad_binding, py::arg("x"),
          py::arg("x_strides"), py::arg("grad"), py::arg("grad_weight"), py::arg("x_shape"),
          py::arg("weight_shape"), py::arg("groups"), py::arg("stride"), py::arg("padding"),
          py::arg("dilation"), py::arg("out_hw"), py::arg("dtype"), py::arg("threads"),
          py::arg("isa") = "auto");
  def_kernel(mod, "selective_scan_fwd", &selective_scan_fwd_binding,
          py::arg("sizes"), py::arg("dtypes"),
          py::arg("inputs"), py::arg("outputs"), py::arg("softplus"), py::arg("negative"),
          py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "selective_scan_bwd", &selective_scan_bwd_binding,
          py::arg("sizes"), py::arg("dtypes"),
          py::arg("inputs"), py::arg("outputs"), py::arg("softplus"), py::arg("negative"),
          py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "delta_rule_forward", &delta_rule_forward_binding,
          py::arg("sizes"), py::arg("dtype"),
          py::arg("q"), py::arg("k"), py::arg("v"), py::arg("beta"), py::arg("o"), py::arg("w"),
          py::arg("h0"), py::arg("last_state"), py::arg("scale"), py::arg("threads"),
          py::arg("isa") = "auto");
  def_kernel(mod, "delta_rule_backward", &delta_rule_backward_binding, py::arg("sizes"),
          py::arg("dtype"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("beta"),
          py::arg("d_o"), py::arg("w"), py::arg("h0"), py::arg("d_last"), py::arg("dq"),
          py::arg("dk"), py::arg("dv"), py::arg("dbeta"), py::arg("dh0"), py::arg("scale"),
          py::arg("threads"), py::arg("isa") = "auto");
  def_kernel(mod, "scheduler_step", &scheduler_step_binding, py::arg("x"), py::arg("m"),
          py::arg("aux"), py::arg("h0"), py::arg("h1"), py::arg("h2"), py::arg("h3"),
          py::arg("n_hist"), py::arg("out"), py::arg("store"), py::arg("n"), py::arg("dtype"),
          py::arg("p_x"), py::arg("p_m"), py::arg("c_x"), py::arg("c_conv"), py::arg("c_aux"),
          py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("threads"),
          py::arg("isa") = "auto");
  def_kernel(mod, "randn_philox", &randn_philox_binding, py::arg("out"), py::arg("n"),
          py::arg("dtype"), py::arg("seed"), py::arg("offset"), py::arg("threads"),
          py::arg("isa") = "auto");
  mod.def("build_info", &build_info);
  mod.def("half_gemm_peak", [](int threads, const std::string& isa, const std::string& dtype) {
    const Isa chosen = parse_isa(isa);
    const DType d = parse_dtype(dtype);
    py::gil_scoped_release release;
    return half_gemm_peak(threads, chosen, d);
  }, py::arg("threads"), py::arg("isa") = "auto", py::arg("dtype") = "float32",
     "Measured rate of the half GEMM micro-kernel's inner operation for operands of dtype "
     "(register-resident FMAs, or vdpbf16ps for bfloat16 where the CPU has AVX512_BF16), in "
     "flops per second");
  mod.def("set_amx_enabled", &set_amx_enabled, py::arg("on"),
          "Lets (True, the default) or stops the bfloat16 GEMM using AMX tiles where usable");
  mod.def("amx_bf16_usable", &amx_bf16_usable,
          "Whether the bfloat16 GEMM runs on AMX tiles here: CPU, OS, permission, switch");
  mod.def("isa_per_op", &isa_per_op, py::arg("requested") = "auto",
          "The ISA path each op runs for a requested one");
  mod.def(
      "advise_huge_pages",
      [](uintptr_t address, int64_t bytes) {
        if (bytes > 0) advise_huge_pages(as_ptr<void>(address), std::size_t(bytes));
      },
      py::arg("address"), py::arg("bytes"));
  bind_binary(mod);
  bind_sparse_wht(mod);
  bind_ode(mod);
}
