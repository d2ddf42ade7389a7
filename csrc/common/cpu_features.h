// Which instruction-set path runs: detected once at run time, overridable per call.
#pragma once

#include <string>

namespace kernelkit {

enum class Isa { portable, avx2 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
};

const CpuFeatures& cpu_features();
bool avx2_compiled();
Isa best_isa();
// "auto" -> best_isa(); "portable"; "avx2" (refused when not compiled or not supported here).
Isa parse_isa(const std::string& name);
const char* isa_name(Isa isa);

}  // namespace kernelkit
