// A std::vector allocator that puts every array on a 64-byte boundary: the kernels' 32-byte
// vector loads and stores then never straddle a cache line (malloc alone gives 16 bytes,
// which splits every other such access in two).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

#include "common/parallel.h"

namespace kernelkit {

constexpr std::size_t kCacheLine = 64;

template <class T> struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U> CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) {
    if (n > std::size_t(INT64_MAX) / sizeof(T)) throw_allocation_failure(INT64_MAX);
    return static_cast<T*>(allocate_aligned(int64_t(n * sizeof(T)), kCacheLine));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kCacheLine)); }
  template <class U> bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U> bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

// A std::vector whose data starts on a cache line.
template <class T> using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace kernelkit
