// OpenMP regions that cannot abort the process. A C++ exception must not leave an OpenMP
// region (GCC calls std::terminate), so every region in csrc/ runs its work items through a
// ParallelErrors: the first exception any thread throws (std::bad_alloc from scratch inside
// the region included) is kept, the remaining items are skipped, and it is rethrown on the
// calling thread after the region, where the bindings turn it into a Python exception.
//
//   ParallelErrors errors;                       // or: parallel_region(threads, body)
//   #pragma omp parallel for ...
//   for (...) errors.run([&] { ...one item... });
//   errors.rethrow();
//
// Regions with barriers run each stretch between barriers through errors.run, so every thread
// still reaches every barrier.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <new>

namespace kernelkit {

// Scratch that could not be allocated: a std::bad_alloc that knows how many bytes were asked
// for (the bindings' MemoryError names them). Members are out of line (common/parallel.cpp),
// so that one type, built for the baseline ISA, is shared by every ISA's translation unit.
class AllocationFailure : public std::bad_alloc {
 public:
  explicit AllocationFailure(int64_t bytes) noexcept;
  const char* what() const noexcept override;
  int64_t bytes() const noexcept { return bytes_; }

 private:
  int64_t bytes_;
  char message_[80];
};

// Throws AllocationFailure(bytes) (never returns).
[[noreturn]] void throw_allocation_failure(int64_t bytes);

// Calls ::operator new(bytes, align), turning std::bad_alloc (and a byte count that does not
// fit size_t) into AllocationFailure.
void* allocate_aligned(int64_t bytes, std::size_t align);

#ifdef KK_ISA
namespace KK_ISA {
#endif

// The first exception thrown by the work items of one OpenMP region (see the top of the file).
class ParallelErrors {
 public:
  // Runs f() unless an item already failed; never lets an exception out.
  template <class F> void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      f();
    } catch (...) {
      bool expected = false;
      if (failed_.compare_exchange_strong(expected, true)) first_ = std::current_exception();
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  // After the region (its end is a barrier): rethrows the first exception, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr first_;
};

// `#pragma omp parallel num_threads(threads)` around body() (which must have no barrier or
// worksharing construct inside), rethrowing the first exception after the region.
template <class Body> void parallel_region(int threads, Body&& body) {
  ParallelErrors errors;
#pragma omp parallel num_threads(threads)
  errors.run(body);
  errors.rethrow();
}

#ifdef KK_ISA
}  // namespace KK_ISA
#endif

}  // namespace kernelkit
