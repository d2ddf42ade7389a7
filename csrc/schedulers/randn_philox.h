// Standard normal values from a counter-based generator, for sampler noise drawn where it is
// used instead of by a serial generator: Philox4x32-10 (Salmon et al., SC'11) keyed by a 64-bit
// seed, one counter per 4 values, Box-Muller on its 32-bit words. The stream is a function of
// (seed, offset, element index) only, so it is the same for any thread count, ISA or device:
//
//   element e:  counter (j lo, j hi, offset lo, offset hi), j = (e / 64) * 16 + e % 16,
//               key (seed lo, seed hi); its words (w0, w1, w2, w3), slot s = (e / 16) % 4;
//   radius(w) = sqrt(-2 log u), u = (floor(w / 2) + 1/2) / 2^31 in (0, 1);
//   angle(w)  = 2 pi floor(w / 256) / 2^24;
//   value     = radius(w0) cos angle(w1), radius(w0) sin angle(w1), radius(w2) cos angle(w3),
//               radius(w2) sin angle(w3) for s = 0, 1, 2, 3.
//
// Values are computed in float32 (relative error ~3e-7 against the exact map) and rounded once
// to the output dtype (float32, float64, float16, bfloat16).
#pragma once

#include <cstdint>

#include "common/cpu_features.h"
#include "common/dtype.h"

namespace kernelkit {

struct RandnPhiloxArgs {
  void* out = nullptr;
  int64_t n = 0;
  DType dtype = DType::f32;
  uint64_t seed = 0;
  uint64_t offset = 0;
  int threads = 1;
};

// Validates (std::invalid_argument, touching no memory on bad arguments) and fills out.
void randn_philox(const RandnPhiloxArgs& args, Isa isa);

namespace portable { void randn_philox_run(const RandnPhiloxArgs& args); }
namespace avx2 { void randn_philox_run(const RandnPhiloxArgs& args); }
namespace avx512 { void randn_philox_run(const RandnPhiloxArgs& args); }

}  // namespace kernelkit
