// def_kernel: mod.def for a kernel's binding, which turns a failed allocation inside the
// kernel (std::bad_alloc, or common/parallel.h's AllocationFailure, which carries the bytes
// asked for; OpenMP regions carry both out through ParallelErrors) into a Python MemoryError
// that names the op: "half_conv2d_forward: could not allocate 34359738400 bytes of scratch".
// Every kernel binding is registered through it (csrc/bindings.cpp, csrc/*/<family>_bindings.cpp).
#pragma once

#include <pybind11/pybind11.h>

#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/dtype.h"
#include "common/parallel.h"

namespace kernelkit {

// A float dtype name from the Python side ("float32", "float64", "float16", "bfloat16"); any
// other name is refused naming the op (when given) and what was expected.
inline DType parse_float_dtype(const std::string& name, const char* op = nullptr) {
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  throw std::invalid_argument((op ? std::string(op) + ": " : std::string()) +
                              "unsupported dtype '" + name +
                              "'; expected float32, float64, float16 or bfloat16");
}

// Raises MemoryError("<op>: could not allocate <bytes> bytes of scratch"); bytes < 0: unknown.
[[noreturn]] inline void raise_memory_error(const char* op, int64_t bytes) {
  if (bytes >= 0)
    PyErr_Format(PyExc_MemoryError, "%s: could not allocate %lld bytes of scratch", op,
                 static_cast<long long>(bytes));
  else
    PyErr_Format(PyExc_MemoryError, "%s: out of memory (a scratch allocation failed)", op);
  throw pybind11::error_already_set();
}

// The binding releases the GIL inside f; it holds it again when f returns or throws.
template <class R, class... A, class... Extra>
void def_kernel(pybind11::module_& mod, const char* name, R (*f)(A...), const Extra&... extra) {
  mod.def(
      name,
      [name, f](A... args) -> R {
        try {
          return f(std::forward<A>(args)...);
        } catch (const AllocationFailure& e) {
          raise_memory_error(name, e.bytes());
        } catch (const std::bad_alloc&) {
          raise_memory_error(name, -1);
        }
      },
      extra...);
}

}  // namespace kernelkit
