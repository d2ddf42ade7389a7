// The out-of-line members of common/parallel.h (built once, for the baseline ISA).
#include "common/parallel.h"

#include <cstdio>
#include <limits>

namespace kernelkit {

AllocationFailure::AllocationFailure(int64_t bytes) noexcept : bytes_(bytes) {
  std::snprintf(message_, sizeof(message_), "could not allocate %lld bytes of scratch",
                static_cast<long long>(bytes));
}

const char* AllocationFailure::what() const noexcept { return message_; }

void throw_allocation_failure(int64_t bytes) { throw AllocationFailure(bytes); }

void* allocate_aligned(int64_t bytes, std::size_t align) {
  if (bytes < 0 || uint64_t(bytes) > std::numeric_limits<std::size_t>::max() / 2)
    throw_allocation_failure(bytes);
  // The nothrow form: AddressSanitizer's throwing operator new aborts instead of throwing;
  // its nothrow one returns null (with allocator_may_return_null=1, as .ci/sanitize sets).
  void* p = ::operator new(std::size_t(bytes), std::align_val_t(align), std::nothrow);
  if (p == nullptr) throw_allocation_failure(bytes);
  return p;
}

}  // namespace kernelkit
