// Scratch memory for kernels: owning arrays, and per-thread buffers kept between calls (OpenMP
// threads persist): a fresh malloc of a few hundred KiB is an mmap, and its page faults cost
// more than a short kernel.
#pragma once

#include <cstdint>
#include <limits>
#include <new>

#include "common/aligned.h"
#include "common/parallel.h"

#ifndef KK_ISA
#error "define KK_ISA (the ISA namespace) before including common/scratch.h"
#endif

namespace kernelkit {
namespace KK_ISA {

// Per-thread buffers up to this size are kept; larger ones are allocated per call.
constexpr int64_t kKeepBytes = int64_t(4) << 20;

// An owning array of a trivial type on a cache line (std::unique_ptr's inline code would be
// shared with the other ISA's build).
template <class S> struct Buffer {
  S* data = nullptr;
  int64_t size = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }
  S* at_least(int64_t n) {
    if (n > size) {
      release();
      // AllocationFailure (a std::bad_alloc naming the bytes) when it cannot be had; inside an
      // OpenMP region the region's ParallelErrors carries it out (common/parallel.h).
      constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / int64_t(sizeof(S));
      data = static_cast<S*>(
          allocate_aligned(n > kMax ? std::numeric_limits<int64_t>::max() : n * int64_t(sizeof(S)),
                           kCacheLine));
      size = n;
    }
    return data;
  }

 private:
  void release() {
    if (data) ::operator delete(data, std::align_val_t(kCacheLine));
    data = nullptr;
    size = 0;
  }
};

// A buffer of at least n elements owned by the calling thread, kept until the thread ends.
// Slot tells apart the buffers one thread needs at the same time.
template <class S, int Slot> S* thread_buffer(int64_t n) {
  static thread_local Buffer<S> kept;
  return kept.at_least(n);
}

// Scratch for one call: a kept per-thread buffer when small, an owned allocation when large.
template <class S, int Slot> struct Scratch {
  Buffer<S> owned;
  S* get(int64_t n) {
    if (n * int64_t(sizeof(S)) <= kKeepBytes) return thread_buffer<S, Slot>(n);
    return owned.at_least(n);
  }
};

}  // namespace KK_ISA
}  // namespace kernelkit
