#include "engine/cpu/commit_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // <linux/mman.h> of Linux 5.14, missing from older libc headers
#endif

namespace inferd::cpu {

bool CommitPages(std::byte* data, size_t bytes) {
  if (bytes == 0) return true;
  // madvise wants a page-aligned start: the bytes before `data` on its first
  // page belong to the same page, which is committed whole anyway.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t aligned = begin & ~(page - 1);
  return madvise(reinterpret_cast<void*>(aligned), bytes + (begin - aligned), MADV_POPULATE_WRITE) == 0;
}

}  // namespace inferd::cpu
