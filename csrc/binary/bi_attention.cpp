// Portable build of the fused bi_attention forward, and the entry point that validates and
// dispatches.
#define KK_ISA portable
#include "binary/bi_attention_impl.h"

#include <stdexcept>
#include <string>

#include "binary/binary_isa.h"

namespace kernelkit {

static void check_bi_attention_args(const BiAttentionArgs& a) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("bi_attention: " + what);
  };
  if (a.batch < 0 || a.Lq < 0 || a.Lk < 0 || a.dv < 0) fail("sizes must be >= 0");
  if (a.d < 1) fail("the head dim d must be >= 1");
  if (a.Lk >= (int64_t(1) << 31) || a.d >= (int64_t(1) << 31))
    fail("Lk and d must be < 2**31 (int32 counts)");
  if (a.threads < 1) fail("threads must be >= 1");
  for (int64_t s : {a.q_rs, a.q_cs, a.k_rs, a.k_cs, a.v_rs, a.v_cs, a.mask_rs, a.mask_cs})
    if (s < 0) fail("strides must be >= 0");
  if (a.batch == 0 || a.Lq == 0 || a.dv == 0) return;
  if (a.out == nullptr || a.q == nullptr || a.offsets == nullptr) fail("null pointer");
  if (a.Lk > 0 && (a.k == nullptr || a.v == nullptr)) fail("null pointer");
  if (a.mask_kind != BiAttentionMask::none && a.mask == nullptr) fail("null mask pointer");
}

void bi_attention_forward(const BiAttentionArgs& args, Isa isa) {
  check_bi_attention_args(args);
  if (args.batch == 0 || args.Lq == 0 || args.dv == 0) return;
  isa = binary_isa(isa);
#if defined(KERNELKIT_HAVE_AVX512)
  if (isa == Isa::avx512) return avx512::bi_attention_forward_run(args);
#endif
#if defined(KERNELKIT_HAVE_AVX2)
  if (isa >= Isa::avx2) return avx2::bi_attention_forward_run(args);
#endif
  portable::bi_attention_forward_run(args);
}

}  // namespace kernelkit
