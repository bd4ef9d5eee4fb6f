// The CUDA backend at serving shapes against the CPU backend (the reference):
// head_dim 128 with 32 query and 8 KV heads (GQA 4:1), GQA 1:1 and 8:1, head
// dim 64; a context past 2,048 tokens prefilled in chunks over its cached
// part in the same steps as other sequences' decodes; block sizes 16 and 32.
// Each logit row is checked on its own: fp32 within 1e-4 of the row's
// largest logit; bf16 by the KL divergence of its distribution and its top-1
// token. Also: decode batches up to max_num_seqs through the graphs captured
// at start-up, the device-side logit candidates, and option checks (which
// need no GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <regex>
#include <vector>

#include "cuda/cuda_graphs.h"
#include "cuda/kernels.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/dummy_weights.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

// bf16 rows: the KL divergence KL(cpu || gpu) of the softmax distributions
// stays under this, and the top-1 token agrees whenever the CPU's top-2
// margin exceeds kBf16Margin of its largest |logit| (5%, the bf16 logit
// tolerance of cuda_backend_test; closer calls may flip in 16 bits).
constexpr double kBf16MaxKl = 1e-2;
constexpr double kBf16Margin = 0.05;
constexpr double kFp32RowTolerance = 1e-4;  // of the row's largest |logit|

struct ShapeCase {
  const char* name;
  int n_heads, n_kv_heads, head_dim, n_layers, block_size;
  const char* dtype;
};

void PrintTo(const ShapeCase& c, std::ostream* os) { *os << c.name << " " << c.dtype; }

std::vector<ShapeCase> ShapeCases() {
  return {
      {"gqa4_head128", 32, 8, 128, 1, 16, "float32"},  {"gqa4_head128", 32, 8, 128, 1, 32, "bfloat16"},
      {"gqa1_head128", 8, 8, 128, 2, 32, "float32"},   {"gqa1_head128", 8, 8, 128, 2, 16, "bfloat16"},
      {"gqa8_head128", 16, 2, 128, 2, 32, "bfloat16"}, {"gqa8_head64", 8, 1, 64, 2, 16, "float32"},
      {"gqa1_head64", 4, 4, 64, 2, 32, "bfloat16"},
  };
}

constexpr int kLongPrompt = 2100;  // past 2,048: many attention tiles and decode splits
constexpr int kPrefillChunk = 1024;
constexpr int kVocab = 512;

ModelConfig ShapeConfig(const ShapeCase& c) {
  ModelConfig m;
  m.name = std::string("dummy:") + c.name;
  m.dim = c.n_heads * c.head_dim;
  m.hidden_dim = 256;  // the feed-forward is not what these shapes test; keeps the CPU reference fast
  m.n_layers = c.n_layers;
  m.n_heads = c.n_heads;
  m.n_kv_heads = c.n_kv_heads;
  m.vocab_size = kVocab;
  m.max_seq_len = 4096;
  m.shared_classifier = false;
  return m;
}

struct Seq {
  std::vector<int> tokens;
  int computed = 0;
  std::vector<int> blocks;
};

// The error of one logit row, against the CPU's.
struct RowCheck {
  double max_abs = 0.0, scale = 1.0, kl = 0.0, margin = 0.0;
  int top_cpu = 0, top_gpu = 0;
};

RowCheck CompareRow(const float* want, const float* got, int n) {
  RowCheck r;
  double m_want = -INFINITY, m_got = -INFINITY;
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) {
      r.max_abs = std::numeric_limits<double>::infinity();
      return r;
    }
    r.max_abs = std::max(r.max_abs, std::fabs(static_cast<double>(want[i]) - got[i]));
    r.scale = std::max(r.scale, std::fabs(static_cast<double>(want[i])));
    m_want = std::max<double>(m_want, want[i]);
    m_got = std::max<double>(m_got, got[i]);
  }
  r.top_cpu = gpu_test::ArgMax(want, n);
  r.top_gpu = gpu_test::ArgMax(got, n);
  double second = -INFINITY;
  for (int i = 0; i < n; ++i) {
    if (i != r.top_cpu) second = std::max<double>(second, want[i]);
  }
  r.margin = want[r.top_cpu] - second;
  double z_want = 0.0, z_got = 0.0;
  for (int i = 0; i < n; ++i) {
    z_want += std::exp(want[i] - m_want);
    z_got += std::exp(got[i] - m_got);
  }
  for (int i = 0; i < n; ++i) {
    const double lp = want[i] - m_want - std::log(z_want);
    const double lq = got[i] - m_got - std::log(z_got);
    r.kl += std::exp(lp) * (lp - lq);
  }
  return r;
}

class RealisticShapeTest : public ::testing::TestWithParam<ShapeCase> {};

// Steps: the long prompt's first chunk alone; its second chunk beside a short
// prompt; its last chunk (over 2,048 cached tokens) beside that prompt's
// first decode and a third prompt; then pure decodes of all three (graphs).
TEST_P(RealisticShapeTest, MatchesCpuBackendRowByRow) {
  INFERD_REQUIRE_GPU();
  const ShapeCase& c = GetParam();
  const bool fp32 = std::string(c.dtype) == "float32";
  const ModelConfig config = ShapeConfig(c);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(config, 11);
  ASSERT_TRUE(w.ok()) << w.status();
  std::shared_ptr<const ModelWeights> weights(*std::move(w));
  const int bs = c.block_size;
  const int num_blocks = 2 * ((kLongPrompt + 64) / bs + 1) + 16;
  absl::StatusOr<std::unique_ptr<CpuBackend>> cpu = CpuBackend::Create(weights, {num_blocks, bs});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  CudaBackendOptions o;
  o.dtype = c.dtype;
  o.kv.num_blocks = num_blocks;
  o.kv.block_size = bs;
  o.max_num_batched_tokens = kPrefillChunk + 128;
  o.max_num_seqs = 8;
  absl::StatusOr<std::unique_ptr<Backend>> gpu = CreateCudaBackend(weights, o);
  ASSERT_TRUE(gpu.ok()) << gpu.status();

  std::mt19937 rng(gpu_test::FreshSeed());
  std::uniform_int_distribution<int> token(3, kVocab - 1);
  std::vector<int> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  auto make_seq = [&](int prompt_len, int capacity) {
    Seq s;
    s.tokens.push_back(1);
    while (static_cast<int>(s.tokens.size()) < prompt_len) s.tokens.push_back(token(rng));
    const int blocks = (capacity + bs - 1) / bs;
    s.blocks.assign(free_blocks.end() - blocks, free_blocks.end());
    free_blocks.resize(free_blocks.size() - blocks);
    return s;
  };
  std::vector<Seq> seqs = {make_seq(kLongPrompt, kLongPrompt + 32), make_seq(5, 64), make_seq(70, 128)};
  const int join_step[3] = {0, 1, 2};

  double worst_fp32 = 0.0, worst_kl = 0.0;
  int rows_checked = 0;
  for (int step = 0; step < 14; ++step) {
    StepBatch batch;
    std::vector<Seq*> wants;
    for (int i = 0; i < 3; ++i) {
      Seq& s = seqs[i];
      if (step < join_step[i]) continue;
      const int pending = static_cast<int>(s.tokens.size()) - s.computed;
      const int n = std::min(pending, kPrefillChunk);
      const bool last = s.computed + n == static_cast<int>(s.tokens.size());
      batch.AddSequence(absl::MakeConstSpan(s.tokens).subspan(s.computed, n), s.computed + n, s.blocks, last);
      s.computed += n;
      if (last) wants.push_back(&s);
    }
    std::vector<float> want(wants.size() * kVocab), got(wants.size() * kVocab, NAN);
    ASSERT_TRUE((*cpu)->Forward(batch, absl::MakeSpan(want)).ok());
    const absl::Status status = (*gpu)->Forward(batch, absl::MakeSpan(got));
    ASSERT_TRUE(status.ok()) << status;
    for (size_t r = 0; r < wants.size(); ++r) {
      const RowCheck check = CompareRow(&want[r * kVocab], &got[r * kVocab], kVocab);
      ++rows_checked;
      if (fp32) {
        worst_fp32 = std::max(worst_fp32, check.max_abs / check.scale);
        EXPECT_LE(check.max_abs, kFp32RowTolerance * check.scale) << "step " << step << " row " << r;
        EXPECT_EQ(check.top_gpu, check.top_cpu) << "step " << step << " row " << r;
      } else {
        worst_kl = std::max(worst_kl, check.kl);
        EXPECT_LE(check.kl, kBf16MaxKl) << "step " << step << " row " << r;
        if (check.margin > kBf16Margin * check.scale) {
          EXPECT_EQ(check.top_gpu, check.top_cpu) << "step " << step << " row " << r << " margin " << check.margin;
        }
      }
      wants[r]->tokens.push_back(check.top_cpu);  // both backends see the CPU's choice next
    }
  }
  std::cout << "[ rows ] " << rows_checked << " rows; worst fp32 error " << worst_fp32 << " of the row's largest logit; "
            << "worst bf16 KL " << worst_kl << std::endl;
}

INSTANTIATE_TEST_SUITE_P(Shapes, RealisticShapeTest, ::testing::ValuesIn(ShapeCases()),
                         [](const ::testing::TestParamInfo<ShapeCase>& info) {
                           return std::string(info.param.name) + "_block" + std::to_string(info.param.block_size) +
                                  "_" + info.param.dtype;
                         });

std::shared_ptr<const ModelWeights> Tiny() {
  static const std::shared_ptr<const ModelWeights> weights = [] {
    absl::StatusOr<std::unique_ptr<ModelWeights>> w = MakeDummyWeights(*DummyPresetConfig("tiny"), 5);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::shared_ptr<const ModelWeights>(w.ok() ? *std::move(w) : nullptr);
  }();
  return weights;
}

// Every decode batch size up to max_num_seqs runs from a graph captured at
// start-up, and gives the eager backend's logits; the start-up log names the
// buckets, the capture time and the kernel launches of one decode step.
TEST(CudaGraphs, EveryBatchSizeUpToMaxNumSeqsMatchesEager) {
  INFERD_REQUIRE_GPU();
  constexpr int kMaxSeqs = 64;
  const int vocab = Tiny()->config.vocab_size;
  std::vector<std::string> log;
  CudaBackendOptions o;
  o.dtype = "float32";
  o.kv.num_blocks = 2 * kMaxSeqs + 8;
  o.kv.block_size = 16;
  o.max_num_seqs = kMaxSeqs;
  o.max_num_batched_tokens = 1024;
  o.log = [&log](const std::string& line) { log.push_back(line); };
  absl::StatusOr<std::unique_ptr<Backend>> graphs = CreateCudaBackend(Tiny(), o);
  ASSERT_TRUE(graphs.ok()) << graphs.status();
  o.cuda_graphs = false;
  o.log = [](const std::string&) {};
  absl::StatusOr<std::unique_ptr<Backend>> eager = CreateCudaBackend(Tiny(), o);
  ASSERT_TRUE(eager.ok()) << eager.status();

  const std::vector<int> buckets = cuda::DecodeGraphs::BucketsUpTo(kMaxSeqs);
  const std::regex captured(R"(CUDA graphs: (\d+) decode batch sizes .* captured in [0-9.]+ s; (\d+) kernel launches)");
  int num_captured = -1, launches = -1;
  for (const std::string& line : log) {
    std::smatch m;
    if (std::regex_search(line, m, captured)) {
      num_captured = std::stoi(m[1]);
      launches = std::stoi(m[2]);
    }
    std::cout << "[ log ] " << line << std::endl;
  }
  EXPECT_EQ(num_captured, static_cast<int>(buckets.size()));
  // Per layer: 2 norms, 4 GEMMs, RoPE, KV append, attention (+ merge), SiLU;
  // plus embedding, final norm, classifier; cuBLAS may add a few.
  const int layers = Tiny()->config.n_layers;
  EXPECT_GT(launches, 10 * layers);
  EXPECT_LE(launches, 16 * layers + 8);

  std::mt19937 rng(gpu_test::FreshSeed());
  std::uniform_int_distribution<int> token(3, vocab - 1);
  std::vector<std::vector<int>> tokens(kMaxSeqs), tables(kMaxSeqs);
  StepBatch batch;
  for (int s = 0; s < kMaxSeqs; ++s) {
    tokens[s] = {1, token(rng), token(rng)};
    tables[s] = {2 * s, 2 * s + 1};
    batch.AddSequence(tokens[s], 3, tables[s], false);
  }
  ASSERT_TRUE((*graphs)->Forward(batch, {}).ok());
  ASSERT_TRUE((*eager)->Forward(batch, {}).ok());
  int context = 3;
  for (const int n : {1, 3, 17, 24, 33, 50, 63, 64}) {
    ++context;
    batch.Clear();
    for (int s = 0; s < n; ++s) {
      tokens[s].push_back(token(rng));
      batch.AddSequence(absl::MakeConstSpan(tokens[s]).subspan(context - 1, 1), context, tables[s], true);
    }
    // Sequences past n fall behind by a token: give them theirs too.
    std::vector<float> a(n * vocab, NAN), b(n * vocab, NAN);
    ASSERT_TRUE((*graphs)->Forward(batch, absl::MakeSpan(a)).ok());
    ASSERT_TRUE((*eager)->Forward(batch, absl::MakeSpan(b)).ok());
    for (int r = 0; r < n; ++r) {
      const RowCheck check = CompareRow(&b[r * vocab], &a[r * vocab], vocab);
      EXPECT_LE(check.max_abs, kFp32RowTolerance * check.scale) << "batch " << n << " row " << r;
    }
    if (n < kMaxSeqs) {
      batch.Clear();
      for (int s = n; s < kMaxSeqs; ++s) {
        tokens[s].push_back(token(rng));
        batch.AddSequence(absl::MakeConstSpan(tokens[s]).subspan(context - 1, 1), context, tables[s], false);
      }
      ASSERT_TRUE((*graphs)->Forward(batch, {}).ok());
      ASSERT_TRUE((*eager)->Forward(batch, {}).ok());
    }
  }
}

// Host-only: the buckets cover every size up to max_num_seqs, and past 16
// sequences padding wastes at most a third of a step.
TEST(CudaGraphs, BucketsCoverMaxNumSeqsWithBoundedPadding) {
  EXPECT_EQ(cuda::DecodeGraphs::BucketsUpTo(256),
            (std::vector<int>{1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256}));
  EXPECT_EQ(cuda::DecodeGraphs::BucketsUpTo(20), (std::vector<int>{1, 2, 4, 8, 16, 20}));
  EXPECT_EQ(cuda::DecodeGraphs::BucketsUpTo(400), (std::vector<int>{1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192,
                                                                     256, 320, 384, 400}));
  for (const int max_seqs : {1, 7, 64, 256, 512}) {
    const std::vector<int> buckets = cuda::DecodeGraphs::BucketsUpTo(max_seqs);
    for (int n = 1; n <= max_seqs; ++n) {
      const auto it = std::lower_bound(buckets.begin(), buckets.end(), n);
      ASSERT_NE(it, buckets.end()) << n;
      if (n > 16) {
        EXPECT_LE(3 * (*it - n), *it) << n << " pads to " << *it;
      }
    }
  }
}

// Host-only: options are checked before any device is touched.
TEST(CudaBackendOptions, GpuMemoryUtilizationMustBeInZeroToPointNineFive) {
  for (const double bad : {0.0, -0.1, 0.96, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    CudaBackendOptions o;
    o.gpu_memory_utilization = bad;
    const absl::Status s = CreateCudaBackend(Tiny(), o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_NE(s.message().find("(0, 0.95]"), std::string::npos) << s;
  }
  CudaBackendOptions o;
  o.gpu_memory_utilization = 0.95;
  o.kv.num_blocks = 16;
  const absl::Status s = CreateCudaBackend(Tiny(), o).status();
  EXPECT_NE(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

// The device's candidate selection equals the host reference on rows of a
// real vocabulary size, with ties, NaNs and an all -inf row.
TEST(LogitCandidates, KernelMatchesHostReference) {
  INFERD_REQUIRE_GPU();
  std::mt19937 rng(gpu_test::FreshSeed());
  for (const int vocab : {50, 1000, 128256}) {
    const int rows = 6;
    std::vector<float> logits = gpu_test::RandomVector(size_t(rows) * vocab, rng, 4.0f);
    for (int i = 0; i < vocab; ++i) {
      logits[size_t(1) * vocab + i] = std::round(logits[size_t(1) * vocab + i]);  // many ties
      logits[size_t(2) * vocab + i] = 0.5f;                                       // all tied
      logits[size_t(3) * vocab + i] = -INFINITY;
    }
    logits[size_t(4) * vocab + 3] = std::numeric_limits<float>::quiet_NaN();
    logits[size_t(5) * vocab + vocab - 1] = 100.0f;  // the winner is the last id
    gpu_test::DeviceBuffer d_logits = gpu_test::UploadFloats(logits);
    for (const int k : {1, 8, 64}) {
      const int kk = std::min(k, vocab);
      gpu_test::DeviceBuffer ids(size_t(rows) * cuda::kMaxCandidates * 4);
      gpu_test::DeviceBuffer values(size_t(rows) * cuda::kMaxCandidates * 4);
      gpu_test::DeviceBuffer lse(size_t(rows) * 4);
      INFERD_ASSERT_CUDA(cuda::LaunchLogitCandidates(d_logits.as<float>(), rows, vocab, kk, ids.as<int>(),
                                                     values.as<float>(), lse.as<float>(), 0));
      INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<int> got_ids(size_t(rows) * cuda::kMaxCandidates);
      std::vector<float> got_values(got_ids.size()), got_lse(rows);
      INFERD_ASSERT_CUDA(cudaMemcpy(got_ids.data(), ids.get(), got_ids.size() * 4, cudaMemcpyDeviceToHost));
      INFERD_ASSERT_CUDA(cudaMemcpy(got_values.data(), values.get(), got_values.size() * 4, cudaMemcpyDeviceToHost));
      INFERD_ASSERT_CUDA(cudaMemcpy(got_lse.data(), lse.get(), rows * 4, cudaMemcpyDeviceToHost));
      for (int r = 0; r < rows; ++r) {
        LogitCandidates want;
        SelectLogitCandidates(absl::MakeConstSpan(&logits[size_t(r) * vocab], vocab), kk, &want);
        ASSERT_EQ(want.k, kk);
        for (int i = 0; i < kk; ++i) {
          ASSERT_EQ(got_ids[size_t(r) * cuda::kMaxCandidates + i], want.ids[i])
              << "vocab " << vocab << " k " << kk << " row " << r << " rank " << i;
          const float gv = got_values[size_t(r) * cuda::kMaxCandidates + i];
          ASSERT_TRUE(gv == want.logits[i] || (std::isnan(gv) && std::isnan(want.logits[i])));
        }
        if (std::isfinite(want.logsumexp)) {
          EXPECT_NEAR(got_lse[r], want.logsumexp, 1e-5 * std::max(1.0f, std::fabs(want.logsumexp)))
              << "vocab " << vocab << " row " << r;
        } else {
          EXPECT_EQ(got_lse[r], want.logsumexp) << "row " << r;
        }
      }
    }
  }
}

// ForwardCandidates on the device: whole rows equal Forward's, candidates
// equal the host selection of Forward's rows, in mixed and graph steps.
TEST(LogitCandidates, ForwardCandidatesMatchesForwardThenSelect) {
  INFERD_REQUIRE_GPU();
  const int vocab = Tiny()->config.vocab_size;
  CudaBackendOptions o;
  o.dtype = "bfloat16";
  o.kv.num_blocks = 64;
  o.kv.block_size = 16;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 256;
  absl::StatusOr<std::unique_ptr<Backend>> a = CreateCudaBackend(Tiny(), o);
  absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(Tiny(), o);
  ASSERT_TRUE(a.ok() && b.ok());
  std::mt19937 rng(gpu_test::FreshSeed());
  std::uniform_int_distribution<int> token(3, vocab - 1);
  const int ks[5] = {0, 1, 5, 64, 0};
  std::vector<std::vector<int>> tokens(5), tables(5);
  for (int s = 0; s < 5; ++s) {
    tokens[s] = {1};
    for (int i = 0; i < 3 + 4 * s; ++i) tokens[s].push_back(token(rng));
    tables[s] = {4 * s, 4 * s + 1, 4 * s + 2, 4 * s + 3};
  }
  for (int step = 0; step < 4; ++step) {  // a prefill step, then pure decodes (graphs)
    StepBatch batch;
    for (int s = 0; s < 5; ++s) {
      const int len = static_cast<int>(tokens[s].size());
      const int first = step == 0 ? 0 : len - 1;
      batch.AddSequence(absl::MakeConstSpan(tokens[s]).subspan(first), len, tables[s], s != 4 || step % 2 == 0,
                        ks[s]);
    }
    const int rows = batch.num_logit_rows();
    std::vector<float> all(size_t(rows) * vocab);
    ASSERT_TRUE((*a)->Forward(batch, absl::MakeSpan(all)).ok());
    std::vector<float> full(size_t(batch.num_full_logit_rows()) * vocab, NAN);
    std::vector<LogitCandidates> candidates(batch.num_candidate_rows());
    const absl::Status status = (*b)->ForwardCandidates(batch, absl::MakeSpan(full), absl::MakeSpan(candidates));
    ASSERT_TRUE(status.ok()) << status;
    int row = 0, f = 0, c = 0;
    for (int s = 0; s < 5; ++s) {
      if (!batch.sequences[s].need_logits) continue;
      const float* r = &all[size_t(row++) * vocab];
      if (ks[s] == 0) {
        EXPECT_TRUE(std::equal(r, r + vocab, &full[size_t(f++) * vocab])) << "step " << step << " seq " << s;
      } else {
        LogitCandidates want;
        SelectLogitCandidates(absl::MakeConstSpan(r, vocab), ks[s], &want);
        const LogitCandidates& got = candidates[c++];
        ASSERT_EQ(got.k, want.k);
        for (int i = 0; i < want.k; ++i) {
          EXPECT_EQ(got.ids[i], want.ids[i]) << "seq " << s << " rank " << i;
        }
        EXPECT_NEAR(got.logsumexp, want.logsumexp, 1e-4);
      }
    }
    for (int s = 0; s < 5; ++s) tokens[s].push_back(token(rng));
  }
}

}  // namespace
}  // namespace inferd
