// Page-size hints for large fresh outputs (see memory.h).
#include "common/memory.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace kernelkit {

void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
  const uintptr_t first = (begin + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t last = end & ~(kHugePageBytes - 1);
  // Only whole huge pages inside the block: the advice must not reach a neighbour's memory.
  // A refusal (THP off, an old kernel) leaves 4 KiB pages: the hint is never an error.
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace kernelkit
