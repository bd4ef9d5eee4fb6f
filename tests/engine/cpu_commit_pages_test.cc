// CommitPages makes every page of a range resident without changing what it
// holds, and CpuBackend::CommitKvCache keeps what the cache already holds.
#include "engine/cpu/commit_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "tests/testing/engine_harness.h"

namespace inferd::cpu {
namespace {

// Anonymous memory that nothing has touched: no page is resident yet.
class Mapping {
 public:
  explicit Mapping(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~Mapping() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  std::byte* data() const { return data_; }
  size_t bytes() const { return bytes_; }

  // Resident pages of [from, to), by mincore.
  size_t ResidentPages(size_t from, size_t to) const {
    const size_t page = PageSize();
    std::vector<unsigned char> resident((to - from + page - 1) / page);
    if (mincore(data_ + from, to - from, resident.data()) != 0) return 0;
    size_t n = 0;
    for (unsigned char r : resident) n += r & 1;
    return n;
  }
  static size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

 private:
  size_t bytes_;
  std::byte* data_;
};

bool Supported() {
  Mapping probe(Mapping::PageSize());
  return probe.data() != nullptr && CommitPages(probe.data(), probe.bytes());
}

TEST(CommitPages, CommitsEveryPageOfTheRangeAndKeepsItsContents) {
  if (!Supported()) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux 5.14+)";
  const size_t page = Mapping::PageSize();
  Mapping m(64 * page);
  ASSERT_NE(m.data(), nullptr);
  ASSERT_EQ(m.ResidentPages(0, m.bytes()), 0u);
  std::memset(m.data() + 5 * page, 0x5A, page);  // a page already written
  // A range that starts and ends inside pages: those pages are committed
  // whole; the pages around it are not touched.
  const size_t from = 3 * page + 100, to = 40 * page + 7;
  ASSERT_TRUE(CommitPages(m.data() + from, to - from));
  EXPECT_EQ(m.ResidentPages(3 * page, 41 * page), 38u);
  EXPECT_EQ(m.ResidentPages(0, 3 * page), 0u);
  EXPECT_EQ(m.ResidentPages(41 * page, m.bytes()), 0u);
  for (size_t i = 0; i < page; ++i) ASSERT_EQ(m.data()[5 * page + i], std::byte{0x5A}) << i;
  for (size_t i = from; i < to; ++i) {
    if (i / page != 5) ASSERT_EQ(m.data()[i], std::byte{0}) << i;
  }
  EXPECT_TRUE(CommitPages(m.data(), 0));
}

TEST(CommitKvCache, KeepsWhatTheCacheHolds) {
  if (!Supported()) GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux 5.14+)";
  const LoadedModel& model = testing::Stories260K();
  auto backend = CpuBackend::Create(model.weights, {.num_blocks = 64, .block_size = 16});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<int> tokens(20), table(2);
  std::iota(tokens.begin(), tokens.end(), 1);
  std::iota(table.begin(), table.end(), 7);
  StepBatch batch;
  batch.AddSequence(tokens, 20, table, /*need_logits=*/true);
  std::vector<float> logits(model.weights->config.vocab_size);
  ASSERT_TRUE((*backend)->Forward(batch, absl::MakeSpan(logits)).ok());
  const std::vector<float> key = (*backend)->KeyAt(2, 8, 3, 0), value = (*backend)->ValueAt(2, 8, 3, 0);
  ASSERT_TRUE((*backend)->CommitKvCache());
  EXPECT_EQ((*backend)->KeyAt(2, 8, 3, 0), key);
  EXPECT_EQ((*backend)->ValueAt(2, 8, 3, 0), value);
  // The next step reads what the first wrote: the same logits as a fresh
  // backend that prefilled all 21 tokens at once.
  StepBatch next;
  std::vector<int> one = {21};
  next.AddSequence(one, 21, table, /*need_logits=*/true);
  ASSERT_TRUE((*backend)->Forward(next, absl::MakeSpan(logits)).ok());
  auto fresh = CpuBackend::Create(model.weights, {.num_blocks = 64, .block_size = 16});
  ASSERT_TRUE(fresh.ok());
  std::vector<int> all(21);
  std::iota(all.begin(), all.end(), 1);
  StepBatch whole;
  whole.AddSequence(all, 21, table, /*need_logits=*/true);
  std::vector<float> expected(logits.size());
  ASSERT_TRUE((*fresh)->Forward(whole, absl::MakeSpan(expected)).ok());
  EXPECT_EQ(logits, expected);
}

}  // namespace
}  // namespace inferd::cpu
