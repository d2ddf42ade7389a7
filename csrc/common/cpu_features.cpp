#include "common/cpu_features.h"

#include <atomic>
#include <stdexcept>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace kernelkit {

#if defined(__x86_64__) || defined(__i386__)
namespace {

struct CpuidRegs { unsigned a = 0, b = 0, c = 0, d = 0; };

CpuidRegs cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) return CpuidRegs{};
  return r;
}

// XGETBV(0): which register states the OS saves on a context switch. Only valid when
// CPUID.1:ECX.OSXSAVE says the OS enabled XSAVE.
unsigned long long xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

bool bit(unsigned reg, int i) { return (reg >> i) & 1u; }

CpuFeatures detect() {
  CpuFeatures f;
  const CpuidRegs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27);
  const unsigned long long xcr = osxsave ? xcr0() : 0;
  f.os_ymm = (xcr & 0x6) == 0x6;            // XMM | YMM
  f.os_zmm = f.os_ymm && (xcr & 0xe0) == 0xe0;  // opmask | ZMM_Hi256 | Hi16_ZMM
  const bool os_amx = (xcr & 0x60000) == 0x60000;  // XTILECFG | XTILEDATA
  const CpuidRegs l7 = cpuid(7, 0);
  const CpuidRegs l71 = cpuid(7, 1);
  f.fma = f.os_ymm && bit(l1.c, 12);
  f.f16c = f.os_ymm && bit(l1.c, 29);
  f.popcnt = bit(l1.c, 23);
  f.avx2 = f.os_ymm && bit(l7.b, 5);
  f.bmi2 = bit(l7.b, 8);
  f.avx512f = f.os_zmm && bit(l7.b, 16);
  f.avx512dq = f.avx512f && bit(l7.b, 17);
  f.avx512bw = f.avx512f && bit(l7.b, 30);
  f.avx512vl = f.avx512f && bit(l7.b, 31);
  f.avx512_vnni = f.avx512f && bit(l7.c, 11);
  f.avx512_bitalg = f.avx512f && bit(l7.c, 12);
  f.avx512_vpopcntdq = f.avx512f && bit(l7.c, 14);
  f.avx512_fp16 = f.avx512f && bit(l7.d, 23);
  f.avx512_bf16 = f.avx512f && bit(l71.a, 5);
  // AMX also needs a per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM) before use;
  // these bits only say the CPU and OS have it.
  f.amx_bf16 = os_amx && bit(l7.d, 22);
  f.amx_tile = os_amx && bit(l7.d, 24);
  f.amx_int8 = os_amx && bit(l7.d, 25);
  const CpuidRegs l0 = cpuid(0, 0);
  const bool amd = l0.b == 0x68747541 && l0.d == 0x69746e65 && l0.c == 0x444d4163;  // AuthenticAMD
  const unsigned base_family = (l1.a >> 8) & 0xf;
  const unsigned family = base_family == 0xf ? base_family + ((l1.a >> 20) & 0xff) : base_family;
  f.zmm_double_pumped = f.avx512f && amd && family == 0x19;
  return f;
}

}  // namespace
#endif

const CpuFeatures& cpu_features() {
#if defined(__x86_64__) || defined(__i386__)
  static const CpuFeatures features = detect();
#else
  static const CpuFeatures features;
#endif
  return features;
}

bool avx2_compiled() {
#if defined(KERNELKIT_HAVE_AVX2)
  return true;
#else
  return false;
#endif
}

bool avx512_compiled() {
#if defined(KERNELKIT_HAVE_AVX512)
  return true;
#else
  return false;
#endif
}

bool avx2_usable() {
  const CpuFeatures& f = cpu_features();
  return avx2_compiled() && f.avx2 && f.fma && f.f16c && f.popcnt;
}

bool avx512_usable() {
  const CpuFeatures& f = cpu_features();
  return avx512_compiled() && avx2_usable() && f.avx512f && f.avx512bw && f.avx512vl &&
         f.avx512dq;
}

namespace {
std::atomic<bool> amx_enabled{true};

bool amx_permitted() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
#else
  return false;
#endif
}
}  // namespace

bool amx_bf16_usable() {
  const CpuFeatures& f = cpu_features();
  return amx_enabled.load(std::memory_order_relaxed) && avx512_usable() && f.amx_tile &&
         f.amx_bf16 && amx_permitted();
}

void set_amx_enabled(bool on) { amx_enabled.store(on, std::memory_order_relaxed); }

Isa best_isa() {
  if (avx512_usable()) return Isa::avx512;
  return avx2_usable() ? Isa::avx2 : Isa::portable;
}

Isa parse_isa(const std::string& name) {
  if (name == "auto") return best_isa();
  if (name == "portable") return Isa::portable;
  if (name == "avx2") {
    if (!avx2_usable())
      throw std::invalid_argument(
          avx2_compiled() ? "isa 'avx2' requested but this CPU (or OS) lacks AVX2/FMA/F16C/POPCNT"
                          : "isa 'avx2' requested but this build has no AVX2 path");
    return Isa::avx2;
  }
  if (name == "avx512") {
    if (!avx512_usable())
      throw std::invalid_argument(
          avx512_compiled()
              ? "isa 'avx512' requested but this CPU (or OS) lacks AVX-512 F/BW/VL/DQ"
              : "isa 'avx512' requested but this build has no AVX-512 path");
    return Isa::avx512;
  }
  throw std::invalid_argument("unknown isa '" + name +
                              "'; expected auto, portable, avx2 or avx512");
}

Isa parse_isa_avx2_where_zmm_halved(const std::string& name) {
  const Isa isa = parse_isa(name);
  if (name == "auto" && isa == Isa::avx512 && cpu_features().zmm_double_pumped) return Isa::avx2;
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace kernelkit
