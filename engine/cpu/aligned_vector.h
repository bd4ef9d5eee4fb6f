// std::vector whose storage starts on a 64-byte boundary: the forward pass's
// activation buffers, so that every row of a width that is a multiple of 16
// floats starts a cache line and the AVX-512 tiles load whole lines (glibc
// puts large blocks 16 bytes past a page boundary, which measured 20-30%
// slower for f32 prefill GEMMs).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace inferd::cpu {

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t n) { ::operator delete(p, n * sizeof(T), kAlignment); }

  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace inferd::cpu
