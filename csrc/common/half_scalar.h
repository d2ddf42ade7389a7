// Scalar IEEE binary16 and bfloat16 <-> float32 conversions, round-to-nearest-even, NaN kept
// quiet. Used by the portable path and for tails; the AVX2 path converts 8 at a time (F16C).
#pragma once

#include <cstdint>
#include <cstring>

#include "common/dtype.h"

namespace kernelkit {
// Internal linkage: this header is compiled into the AVX2 translation units too, and one
// shared copy of an inline function could be the AVX2 build of it.
namespace {

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float to_float(bf16_bits h) { return bits_to_float(uint32_t(h.bits) << 16); }

inline bf16_bits to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_bits{uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_bits{uint16_t(u >> 16)};
}

inline float to_float(f16_bits h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t man = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
  // Subnormal half: value is man * 2^-24, exact in float.
  const float mag = float(man) * 5.9604644775390625e-8f;
  return sign ? -mag : mag;
}

inline f16_bits to_f16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_bits{uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};
  if (a >= 0x477ff000u) return f16_bits{uint16_t(sign | 0x7c00u)};  // rounds to inf
  if (a < 0x38800000u) {
    // Result is subnormal or zero: let float addition do the rounding to a multiple of 2^-24.
    const float m = bits_to_float(a) + 0.5f;  // 0.5 = 2^-1; ulp of floats in [0.5, 1) is 2^-24
    return f16_bits{uint16_t(sign | (float_to_bits(m) - 0x3f000000u))};
  }
  const uint32_t rounded = a + 0x0fffu + ((a >> 13) & 1u);
  return f16_bits{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
}

template <class S> inline S to_compute(float v) { return S(v); }
template <class S> inline S to_compute(double v) { return S(v); }
template <class S> inline S to_compute(f16_bits v) { return S(to_float(v)); }
template <class S> inline S to_compute(bf16_bits v) { return S(to_float(v)); }

template <class T> struct StoreAs;
template <> struct StoreAs<float> { template <class S> static float from(S v) { return float(v); } };
template <> struct StoreAs<double> { template <class S> static double from(S v) { return double(v); } };
template <> struct StoreAs<f16_bits> { template <class S> static f16_bits from(S v) { return to_f16(float(v)); } };
template <> struct StoreAs<bf16_bits> { template <class S> static bf16_bits from(S v) { return to_bf16(float(v)); } };

}  // namespace
}  // namespace kernelkit
