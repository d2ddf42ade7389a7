// Memory hints for kernels: software prefetch.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernelkit {

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
