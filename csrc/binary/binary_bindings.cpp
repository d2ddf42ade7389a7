// pybind11 bindings of the binary family (quantizers, bit packing, popcount GEMM and
// convolution, Bi-Attention): raw pointers, sizes and strides in, no torch; the GIL is
// released around every kernel. Registered by csrc/bindings.cpp through bind_binary.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "binary/binary_isa.h"
#include "binary/bit_packing.h"

namespace py = pybind11;

namespace kernelkit {

namespace {

template <class T> T* binary_ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

// The path a binary op runs when `name` ("auto", "portable", "avx2", "avx512") is asked for.
Isa parse_binary_isa(const std::string& name) { return binary_isa(parse_isa(name)); }

// ---- quantizers ------------------------------------------------------------------------------

// ---- pack_signs / unpack_signs ---------------------------------------------------------------

using Sizes3 = std::tuple<int64_t, int64_t, int64_t>;  // (outer, n, inner)

Strides3 strides3(const Sizes3& t) {
  return Strides3{std::get<0>(t), std::get<1>(t), std::get<2>(t)};
}

DType packing_dtype(const std::string& op, const std::string& name) {
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  throw std::invalid_argument(op + ": unsupported dtype '" + name +
                              "'; expected float32, float64, float16 or bfloat16");
}

bool pack_signs_binding(uintptr_t x, const std::string& dtype, const Sizes3& sizes,
                        const Sizes3& x_strides, uintptr_t words, const Sizes3& word_strides,
                        int threads, const std::string& isa) {
  PackSignsArgs a;
  a.x = binary_ptr<const void>(x);
  a.dtype = packing_dtype("pack_signs", dtype);
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
  a.dtype = packing_dtype("unpack_signs", dtype);
  a.out_strides = strides3(out_strides);
  a.threads = threads;
  const Isa chosen = parse_binary_isa(isa);
  py::gil_scoped_release release;
  unpack_signs(a, chosen);
}

// ---- binary_gemm (binary_matmul, binary_linear) ----------------------------------------------

// ---- binary_conv2d ---------------------------------------------------------------------------

// ---- bi_attention ----------------------------------------------------------------------------

}  // namespace

void bind_binary(py::module_& mod) {
  mod.def("binary_isa_in_use", [](const std::string& isa) {
    return std::string(isa_name(parse_binary_isa(isa)));
  }, py::arg("isa") = "auto",
     "The ISA path the binary ops run for a requested one (AVX-512 needs VPOPCNTDQ + BITALG)");
  // ---- quantizers ----
  // ---- pack_signs / unpack_signs ----
  mod.def("pack_signs", &pack_signs_binding, py::arg("x"), py::arg("dtype"), py::arg("sizes"),
          py::arg("x_strides"), py::arg("words"), py::arg("word_strides"), py::arg("threads"),
          py::arg("isa"),
          "Signs of x, an (outer, n, inner) view, into int32 words (outer, ceil(n/32), inner), "
          "LSB first, bit = 1 where x < 0; strides in elements; returns whether x holds a NaN");
  mod.def("unpack_signs", &unpack_signs_binding, py::arg("words"), py::arg("word_strides"),
          py::arg("sizes"), py::arg("out"), py::arg("dtype"), py::arg("out_strides"),
          py::arg("threads"), py::arg("isa"),
          "+-1 values (outer, n, inner) in dtype from int32 sign words (outer, ceil(n/32), "
          "inner); strides in elements");
  // ---- binary_gemm ----
  // ---- binary_conv2d ----
  // ---- bi_attention ----
}

}  // namespace kernelkit
