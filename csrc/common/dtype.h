// Element types crossing the Python boundary, and the 16-bit storage types computed in fp32.
#pragma once

#include <cstdint>

namespace kernelkit {

enum class DType { f32, f64, f16, bf16 };

// Distinct tag types so that templates can tell the two 16-bit formats apart.
struct f16_bits { uint16_t bits; };
struct bf16_bits { uint16_t bits; };

}  // namespace kernelkit
