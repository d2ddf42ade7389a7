// Which instruction-set path runs: detected once at run time (cpuid, and the register state
// the OS saves: XCR0), overridable per call. One wheel runs on any x86-64.
#pragma once

#include <string>

namespace kernelkit {

// Ordered: a path includes what the ones before it use. Ops without an AVX-512 build run
// their AVX2 code under Isa::avx512 (isa >= Isa::avx2).
enum class Isa { portable, avx2, avx512 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool bmi2 = false;
  bool popcnt = false;
  bool os_ymm = false;        // XCR0: the OS saves SSE and AVX state
  bool os_zmm = false;        // XCR0: ... and the opmask and all 512-bit registers
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512_vpopcntdq = false;
  bool avx512_bitalg = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx512_fp16 = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
  bool amx_int8 = false;
  // 512-bit arithmetic issued as two 256-bit halves on the same pipes (AMD family 19h, Zen 4):
  // a zmm FMA costs two ymm FMAs' issue slots, so kernels bound by FMA issue and stores gain
  // nothing from zmm there, and some lose to their AVX2 build.
  bool zmm_double_pumped = false;
};

const CpuFeatures& cpu_features();
bool avx2_compiled();
bool avx512_compiled();
// AVX2 + FMA + F16C + POPCNT with OS support; AVX-512 F/BW/VL/DQ with OS support of ZMM state.
bool avx2_usable();
bool avx512_usable();
// AMX-BF16 tiles (used inside the AVX-512 path by the bfloat16 GEMM): the CPU and the OS
// (XCR0) have them, Linux grants this process the tile data state (asked once, by
// arch_prctl), and they are not switched off by set_amx_enabled(false) (the tests' and the
// bench's switch between the AMX and the AVX512_BF16 kernels).
bool amx_bf16_usable();
void set_amx_enabled(bool on);
Isa best_isa();
// "auto" -> best_isa(); "portable"; "avx2"; "avx512" (refused with a clear message when not
// compiled or not supported by this CPU and OS).
Isa parse_isa(const std::string& name);
// As parse_isa, for ops whose AVX2 build outruns their AVX-512 build where zmm is double-pumped
// (delta_rule: 1.4x on Zen 4): "auto" then gives AVX2 there; an explicit request is kept.
Isa parse_isa_avx2_where_zmm_halved(const std::string& name);
const char* isa_name(Isa isa);

}  // namespace kernelkit
