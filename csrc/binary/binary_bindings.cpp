// pybind11 bindings of the binary family (quantizers, bit packing, popcount GEMM and
// convolution, Bi-Attention): raw pointers, sizes and strides in, no torch; the GIL is
// released around every kernel. Registered by csrc/bindings.cpp through bind_binary.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "binary/bi_attention.h"
#include "binary/binary_conv2d.h"
#include "binary/binary_gemm.h"
#include "binary/binary_isa.h"
#include "binary/bit_packing.h"
#include "binary/quantizers.h"
#include "kernel_binding.h"

namespace py = pybind11;

namespace kernelkit {

namespace {

template <class T> T* binary_ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

// The path a binary op runs when `name` ("auto", "portable", "avx2", "avx512") is asked for.
Isa parse_binary_isa(const std::string& name) { return binary_isa(parse_isa(name)); }

// ---- quantizers ------------------------------------------------------------------------------

void quantize_binding(uintptr_t x, uintptr_t out, const std::string& dtype, int64_t n, int kind,
                      double param, double clip, bool clipped, uintptr_t mask, uintptr_t scale,
                      int64_t channels, int threads, const std::string& isa) {
  QuantizeArgs a;
  a.x = binary_ptr<const void>(x);
  a.out = binary_ptr<void>(out);
  a.dtype = parse_float_dtype(dtype, "quantize");
  a.n = n;
  a.kind = QuantKind(kind);
  a.param = param;
  a.clip = clip;
  a.clipped = clipped;
  a.mask = binary_ptr<int32_t>(mask);
  a.scale = binary_ptr<const void>(scale);
  a.channels = channels;
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  quantize(a, chosen);
}

void quantize_backward_binding(uintptr_t grad, uintptr_t x, uintptr_t mask, uintptr_t scale,
                               int64_t channels, uintptr_t out, const std::string& dtype,
                               int64_t n, int kind, double param, int threads,
                               const std::string& isa) {
  QuantizeBackwardArgs a;
  a.grad = binary_ptr<const void>(grad);
  a.x = binary_ptr<const void>(x);
  a.mask = binary_ptr<const int32_t>(mask);
  a.scale = binary_ptr<const void>(scale);
  a.channels = channels;
  a.out = binary_ptr<void>(out);
  a.dtype = parse_float_dtype(dtype, "quantize");
  a.n = n;
  a.kind = QuantKind(kind);
  a.param = param;
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  quantize_backward(a, chosen);
}

// ---- pack_signs / unpack_signs ---------------------------------------------------------------

using Sizes3 = std::tuple<int64_t, int64_t, int64_t>;  // (outer, n, inner)

Strides3 strides3(const Sizes3& t) {
  return Strides3{std::get<0>(t), std::get<1>(t), std::get<2>(t)};
}

bool pack_signs_binding(uintptr_t x, const std::string& dtype, const Sizes3& sizes,
                        const Sizes3& x_strides, uintptr_t words, const Sizes3& word_strides,
                        int threads, const std::string& isa) {
  PackSignsArgs a;
  a.x = binary_ptr<const void>(x);
  a.dtype = parse_float_dtype(dtype, "pack_signs");
  std::tie(a.outer, a.n, a.inner) = sizes;
  a.x_strides = strides3(x_strides);
  a.words = binary_ptr<int32_t>(words);
  a.word_strides = strides3(word_strides);
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  return pack_signs(a, chosen);
}

void unpack_signs_binding(uintptr_t words, const Sizes3& word_strides, const Sizes3& sizes,
                          uintptr_t out, const std::string& dtype, const Sizes3& out_strides,
                          int threads, const std::string& isa) {
  UnpackSignsArgs a;
  a.words = binary_ptr<const int32_t>(words);
  a.word_strides = strides3(word_strides);
  std::tie(a.outer, a.n, a.inner) = sizes;
  a.out = binary_ptr<void>(out);
  a.dtype = parse_float_dtype(dtype, "unpack_signs");
  a.out_strides = strides3(out_strides);
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  unpack_signs(a, chosen);
}

// ---- binary_gemm (binary_matmul, binary_linear) ----------------------------------------------

// "int32" (packed sign words, or an int32 output) or a float dtype name.
bool gemm_dtype(const std::string& name, DType& dtype) {
  if (name == "int32") return true;
  if (name != "float32" && name != "float64" && name != "float16" && name != "bfloat16")
    throw std::invalid_argument("binary_gemm: unsupported dtype '" + name +
                                "'; expected int32, float32, float64, float16 or bfloat16");
  dtype = parse_float_dtype(name);
  return false;
}

// One operand: (address, batch stride, row stride, column stride, extent along K: elements,
// or words when packed) and its dtype name.
using GemmOperand = std::tuple<uintptr_t, int64_t, int64_t, int64_t, int64_t>;
using GemmOutput = std::tuple<uintptr_t, int64_t, int64_t, int64_t>;

BinaryOperand gemm_operand(const GemmOperand& t, const std::string& dtype) {
  BinaryOperand op;
  op.p = binary_ptr<const void>(std::get<0>(t));
  op.bs = std::get<1>(t);
  op.rs = std::get<2>(t);
  op.cs = std::get<3>(t);
  op.packed = gemm_dtype(dtype, op.dtype);
  op.k_extent = std::get<4>(t);
  return op;
}

void binary_gemm_binding(int64_t batch, int64_t M, int64_t N, int64_t K, const GemmOperand& a,
                         const std::string& a_dtype, const GemmOperand& b,
                         const std::string& b_dtype, const GemmOutput& c,
                         const std::string& out_dtype, uintptr_t scale, double scale_value,
                         uintptr_t bias, int threads, const std::string& isa) {
  BinaryGemmArgs g;
  g.batch = batch;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = gemm_operand(a, a_dtype);
  g.b = gemm_operand(b, b_dtype);
  g.c = binary_ptr<void>(std::get<0>(c));
  g.c_bs = std::get<1>(c);
  g.c_rs = std::get<2>(c);
  g.c_cs = std::get<3>(c);
  g.out_int32 = gemm_dtype(out_dtype, g.out_dtype);
  g.scale = binary_ptr<const void>(scale);
  g.scale_value = scale_value;
  g.bias = binary_ptr<const void>(bias);
  g.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  binary_gemm(g, chosen);
}

// ---- binary_conv2d ---------------------------------------------------------------------------

using Sizes4 = std::tuple<int64_t, int64_t, int64_t, int64_t>;
using Pair = std::tuple<int64_t, int64_t>;

void binary_conv2d_binding(uintptr_t x, const std::string& x_dtype, const Sizes4& x_sizes,
                           const Sizes4& x_strides, uintptr_t weight,
                           const std::string& w_dtype, const Sizes4& w_sizes,
                           const Sizes4& w_strides, int64_t groups, const Pair& stride,
                           const Pair& padding, const Pair& dilation, bool pad_plus1,
                           uintptr_t out, const std::string& out_dtype, const Pair& out_size,
                           uintptr_t scale, double scale_value, uintptr_t bias, int threads,
                           const std::string& isa) {
  BinaryConv2dArgs g;
  g.x = binary_ptr<const void>(x);
  gemm_dtype(x_dtype, g.x_dtype);
  std::tie(g.N, g.C, g.H, g.W) = x_sizes;
  std::tie(g.x_strides[0], g.x_strides[1], g.x_strides[2], g.x_strides[3]) = x_strides;
  g.weight = binary_ptr<const void>(weight);
  g.weight_packed = gemm_dtype(w_dtype, g.weight_dtype);
  int64_t w_in = 0;
  std::tie(g.O, w_in, g.KH, g.KW) = w_sizes;
  std::tie(g.w_strides[0], g.w_strides[1], g.w_strides[2], g.w_strides[3]) = w_strides;
  g.groups = groups;
  const int64_t cg = groups > 0 ? g.C / groups : 0;
  if (w_in != (g.weight_packed ? (cg + 31) / 32 : cg))
    throw std::invalid_argument("binary_conv2d: weight's dim 1 does not match C / groups");
  std::tie(g.stride_h, g.stride_w) = stride;
  std::tie(g.pad_h, g.pad_w) = padding;
  std::tie(g.dil_h, g.dil_w) = dilation;
  g.pad_plus1 = pad_plus1;
  g.out = binary_ptr<void>(out);
  if (gemm_dtype(out_dtype, g.out_dtype))
    throw std::invalid_argument("binary_conv2d: the output must be a float dtype");
  std::tie(g.OH, g.OW) = out_size;
  g.scale = binary_ptr<const void>(scale);
  g.scale_value = scale_value;
  g.bias = binary_ptr<const void>(bias);
  g.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  binary_conv2d(g, chosen);
}


// ---- bi_attention ----------------------------------------------------------------------------

using Sizes5 = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;
using Strided2 = std::tuple<uintptr_t, int64_t, int64_t>;  // (address, row, column strides)

void bi_attention_forward_binding(const Sizes5& sizes, const std::string& dtype,
                                  uintptr_t offsets, const Strided2& q, const Strided2& k,
                                  const Strided2& v, int mask_kind, const Strided2& mask,
                                  uintptr_t out, double sqrt_d, int threads,
                                  const std::string& isa) {
  BiAttentionArgs a;
  std::tie(a.batch, a.Lq, a.Lk, a.d, a.dv) = sizes;
  a.dtype = parse_float_dtype(dtype, "bi_attention");
  a.offsets = binary_ptr<const int64_t>(offsets);
  a.q = binary_ptr<const void>(std::get<0>(q));
  std::tie(std::ignore, a.q_rs, a.q_cs) = q;
  a.k = binary_ptr<const void>(std::get<0>(k));
  std::tie(std::ignore, a.k_rs, a.k_cs) = k;
  a.v = binary_ptr<const void>(std::get<0>(v));
  std::tie(std::ignore, a.v_rs, a.v_cs) = v;
  if (mask_kind < 0 || mask_kind > 2)
    throw std::invalid_argument("bi_attention: mask_kind must be 0 (none), 1 (keep) or 2 (add)");
  a.mask_kind = BiAttentionMask(mask_kind);
  a.mask = binary_ptr<const void>(std::get<0>(mask));
  std::tie(std::ignore, a.mask_rs, a.mask_cs) = mask;
  a.out = binary_ptr<void>(out);
  a.sqrt_d = sqrt_d;
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  bi_attention_forward(a, chosen);
}

}  // namespace

void bind_binary(py::module_& mod) {
  mod.def("binary_isa_in_use", [](const std::string& isa) {
    return std::string(isa_name(parse_binary_isa(isa)));
  }, py::arg("isa") = "auto",
     "The ISA path the binary ops run for a requested one (AVX-512 needs VPOPCNTDQ + BITALG)");
  // ---- quantizers ----
  def_kernel(mod, "quantize", &quantize_binding, py::arg("x"), py::arg("out"), py::arg("dtype"),
          py::arg("n"), py::arg("kind"), py::arg("param"), py::arg("clip"), py::arg("clipped"),
          py::arg("mask"), py::arg("scale"), py::arg("channels"), py::arg("threads"),
          py::arg("isa"),
          "Elementwise quantizer forward over n contiguous elements (kind: QuantKind), mask "
          "bits (1 = gradient passes) into ceil(n/32) int32 words when mask != 0");
  def_kernel(mod, "quantize_backward", &quantize_backward_binding, py::arg("grad"), py::arg("x"),
          py::arg("mask"), py::arg("scale"), py::arg("channels"), py::arg("out"),
          py::arg("dtype"), py::arg("n"), py::arg("kind"), py::arg("param"), py::arg("threads"),
          py::arg("isa"),
          "Quantizer backward: grad masked by the forward's bits, or the surrogate "
          "derivative of x (approx_sign, swish_sign, periodic_sign); times scale per channel");
  // ---- pack_signs / unpack_signs ----
  def_kernel(mod, "pack_signs", &pack_signs_binding,
          py::arg("x"), py::arg("dtype"), py::arg("sizes"),
          py::arg("x_strides"), py::arg("words"), py::arg("word_strides"), py::arg("threads"),
          py::arg("isa"),
          "Signs of x, an (outer, n, inner) view, into int32 words (outer, ceil(n/32), inner), "
          "LSB first, bit = 1 where x < 0; strides in elements; returns whether x holds a NaN");
  def_kernel(mod, "unpack_signs", &unpack_signs_binding, py::arg("words"), py::arg("word_strides"),
          py::arg("sizes"), py::arg("out"), py::arg("dtype"), py::arg("out_strides"),
          py::arg("threads"), py::arg("isa"),
          "+-1 values (outer, n, inner) in dtype from int32 sign words (outer, ceil(n/32), "
          "inner); strides in elements");
  // ---- binary_gemm ----
  def_kernel(mod, "binary_gemm", &binary_gemm_binding, py::arg("batch"), py::arg("M"), py::arg("N"),
          py::arg("K"), py::arg("a"), py::arg("a_dtype"), py::arg("b"), py::arg("b_dtype"),
          py::arg("c"), py::arg("out_dtype"), py::arg("scale"), py::arg("scale_value"),
          py::arg("bias"), py::arg("threads"), py::arg("isa"),
          "C = sign(A) @ sign(B) by XNOR-popcount; operands (address, batch, row, column "
          "strides, extent along K), int32 = packed sign words; C * scale + bias for a float C");
  mod.def("binary_popcount_peak", [](int threads, const std::string& isa) {
    const Isa chosen = parse_binary_isa(isa);
    py::gil_scoped_release release;
    return binary_popcount_peak(threads, chosen);
  }, py::arg("threads"), py::arg("isa") = "auto",
     "Measured rate of the popcount GEMM's inner operation (register-resident xor + popcount "
     "+ add), in bit-pair multiply-accumulates per second");
  // ---- binary_conv2d ----
  def_kernel(mod, "binary_conv2d", &binary_conv2d_binding, py::arg("x"), py::arg("x_dtype"),
          py::arg("x_sizes"), py::arg("x_strides"), py::arg("weight"), py::arg("w_dtype"),
          py::arg("w_sizes"), py::arg("w_strides"), py::arg("groups"), py::arg("stride"),
          py::arg("padding"), py::arg("dilation"), py::arg("pad_plus1"), py::arg("out"),
          py::arg("out_dtype"), py::arg("out_size"), py::arg("scale"), py::arg("scale_value"),
          py::arg("bias"), py::arg("threads"), py::arg("isa"),
          "out = conv2d(sign(x), sign(w)) * scale + bias by XNOR-popcount: x NCHW (any "
          "strides), weight float or int32 sign words packed along dim 1; out contiguous");
  // ---- bi_attention ----
  def_kernel(mod, "bi_attention_forward", &bi_attention_forward_binding, py::arg("sizes"),
          py::arg("dtype"), py::arg("offsets"), py::arg("q"), py::arg("k"), py::arg("v"),
          py::arg("mask_kind"), py::arg("mask"), py::arg("out"), py::arg("sqrt_d"),
          py::arg("threads"), py::arg("isa"),
          "out = 1[sign(q) sign(k)^T / sqrt_d + mask > 0] sign(v), fused; sizes (batch, Lq, "
          "Lk, d, dv), offsets (4, batch) int64 element offsets of each entry in q, k, v and "
          "the mask; operands (address, row stride, column stride); out contiguous");
}

}  // namespace kernelkit
