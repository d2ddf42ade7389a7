// Memory hints for kernels: software prefetch, and huge pages for large fresh outputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernelkit {

constexpr uintptr_t kHugePageBytes = uintptr_t(2) << 20;

// Asks the OS to back the whole 2 MiB pages of [p, p + bytes) with transparent huge pages
// when they are first touched. A fresh 64 MiB tensor costs 16384 page faults at 4 KiB (about
// 20 ms here, more than a 4096^3 binary GEMM) and 32 at 2 MiB (about 3 ms). Call it before
// the first write; no effect where the OS has no such pages.
void advise_huge_pages(void* p, std::size_t bytes);

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
