#include "common/cpu_features.h"

#include <stdexcept>

namespace kernelkit {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = __builtin_cpu_supports("f16c");
#endif
    return f;
  }();
  return features;
}

bool avx2_compiled() {
#if defined(KERNELKIT_HAVE_AVX2)
  return true;
#else
  return false;
#endif
}

static bool avx2_usable() {
  const CpuFeatures& f = cpu_features();
  return avx2_compiled() && f.avx2 && f.fma && f.f16c;
}

Isa best_isa() { return avx2_usable() ? Isa::avx2 : Isa::portable; }

Isa parse_isa(const std::string& name) {
  if (name == "auto") return best_isa();
  if (name == "portable") return Isa::portable;
  if (name == "avx2") {
    if (!avx2_usable())
      throw std::invalid_argument("isa 'avx2' requested but this build or CPU lacks AVX2/FMA/F16C");
    return Isa::avx2;
  }
  throw std::invalid_argument("unknown isa '" + name + "'; expected auto, portable or avx2");
}

const char* isa_name(Isa isa) { return isa == Isa::avx2 ? "avx2" : "portable"; }

}  // namespace kernelkit
