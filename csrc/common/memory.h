// Memory hints for large buffers a kernel is about to fill.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernelkit {

// Asks the kernel to back the 2 MiB-aligned interior of [p, p + nbytes) with transparent huge
// pages on first touch (Linux; a no-op elsewhere or when THP is off). A fresh 64 MiB output
// otherwise costs 16384 page faults, more time than the transform that fills it; PyTorch
// offers the same for its own allocations (THP_MEM_ALLOC_ENABLE=1).
void advise_huge_pages(void* p, size_t nbytes);

// Asks for the cache lines of n elements from p, for streams the hardware prefetchers miss:
// rows far apart, or short bursts between long stretches of arithmetic. Never faults.
template <class T> inline void prefetch_span(const T* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < n * int64_t(sizeof(T)); b += 64) {
#if defined(__x86_64__)
    // GCC 12 drops __builtin_prefetch in some loops at -O1 and above.
    asm volatile("prefetcht0 %0" : : "m"(c[b]));
#else
    __builtin_prefetch(c + b);
#endif
  }
}

}  // namespace kernelkit
