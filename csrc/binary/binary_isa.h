// The binary family's AVX-512 build also uses VPOPCNTDQ and BITALG (CMakeLists.txt adds them
// to csrc/binary/*_avx512.cpp): on AVX-512 CPUs without them (Skylake-X, Cascade Lake) its
// ops run the AVX2 build instead.
#pragma once

#include "common/cpu_features.h"

namespace kernelkit {

inline bool binary_avx512_usable() {
  const CpuFeatures& f = cpu_features();
  return avx512_usable() && f.avx512_vpopcntdq && f.avx512_bitalg;
}

// The path a binary op runs for a requested one.
inline Isa binary_isa(Isa requested) {
  if (requested == Isa::avx512 && !binary_avx512_usable()) return Isa::avx2;
  return requested;
}

}  // namespace kernelkit
