// Memory hints for large buffers a kernel is about to fill.
#pragma once

#include <cstddef>

namespace kernelkit {

// Asks the kernel to back the 2 MiB-aligned interior of [p, p + nbytes) with transparent huge
// pages on first touch (Linux; a no-op elsewhere or when THP is off). A fresh 64 MiB output
// otherwise costs 16384 page faults, more time than the transform that fills it; PyTorch
// offers the same for its own allocations (THP_MEM_ALLOC_ENABLE=1).
void advise_huge_pages(void* p, size_t nbytes);

}  // namespace kernelkit
