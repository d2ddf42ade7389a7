// Element types crossing the Python boundary, and the 16-bit storage types computed in fp32.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace kernelkit {

enum class DType { f32, f64, f16, bf16 };

// Distinct tag types so that templates can tell the two 16-bit formats apart.
struct f16_bits { uint16_t bits; };
struct bf16_bits { uint16_t bits; };

inline DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  throw std::invalid_argument("unsupported dtype '" + name +
                              "'; expected float32, float64, float16 or bfloat16");
}

}  // namespace kernelkit
