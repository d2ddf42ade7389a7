// pybind11 bindings of the binary family (quantizers, bit packing, popcount GEMM and
// convolution, Bi-Attention): raw pointers, sizes and strides in, no torch; the GIL is
// released around every kernel. Registered by csrc/bindings.cpp through bind_binary.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "binary/binary_isa.h"

namespace py = pybind11;

namespace kernelkit {

namespace {

template <class T> T* binary_ptr(uintptr_t address) { return reinterpret_cast<T*>(address); }

// The path a binary op runs when `name` ("auto", "portable", "avx2", "avx512") is asked for.
Isa parse_binary_isa(const std::string& name) { return binary_isa(parse_isa(name)); }

// ---- quantizers ------------------------------------------------------------------------------

// ---- pack_signs / unpack_signs ---------------------------------------------------------------

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
  // ---- binary_gemm ----
  // ---- binary_conv2d ----
  // ---- bi_attention ----
}

}  // namespace kernelkit
