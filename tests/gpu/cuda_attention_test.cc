// The paged attention kernels (decode with split-K, causal prefill) against
// a double-precision reference on fresh random caches with shuffled block
// tables. Cache slots no sequence owns hold NaN, so reading one fails. Every
// (token, head) output row is checked on its own (the max over rows), so one
// wrong head cannot hide in a sequence's pooled error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/attention_plan.h"
#include "cuda/kernels.h"
#include "cuda/step_inputs.h"
#include "tests/gpu/gpu_test_util.h"

namespace inferd {
namespace {

using cuda::Dtype;
using gpu_test::DeviceBuffer;
using gpu_test::Download;
using gpu_test::RoundAll;
using gpu_test::Upload;

struct SeqSpec {
  int context;
  int num_queries;  // 1: run by the decode kernel
};

struct Scenario {
  const char* name;
  int n_heads, n_kv_heads, head_dim, block_size;
  std::vector<SeqSpec> seqs;
};

std::ostream& operator<<(std::ostream& os, const Scenario& s) { return os << s.name; }

std::vector<Scenario> Scenarios() {
  return {
      {"stories260K_shape", 8, 4, 8, 16, {{1, 1}, {7, 1}, {16, 1}, {17, 1}, {255, 1}, {512, 1}, {40, 40}, {100, 37}, {33, 2}}},
      {"llama3_gqa4", 32, 8, 128, 16, {{1, 1}, {100, 1}, {1000, 1}, {3000, 1}, {200, 200}, {300, 65}}},
      {"mha_head64_block32", 4, 4, 64, 32, {{5, 1}, {700, 1}, {64, 64}, {129, 3}}},
      {"group12_two_head_chunks", 24, 2, 64, 16, {{33, 1}, {900, 1}, {50, 50}, {80, 17}}},
      {"head256_generic", 4, 1, 256, 8, {{3, 1}, {333, 1}, {70, 70}}},
      {"head96_generic", 6, 2, 96, 16, {{61, 1}, {1025, 1}, {90, 45}}},
      // Realistic serving shapes: contexts over many tiles (>= 2048), prefill
      // chunks over a cached context beside decodes, block sizes 16 and 32,
      // GQA 1:1, 4:1 and 8:1 at head dims 64 and 128.
      {"gqa4_head128_long_mixed_block32", 32, 8, 128, 32, {{2049, 1}, {4100, 1}, {2600, 33}, {77, 1}}},
      {"gqa1_head128_long_block16", 8, 8, 128, 16, {{2048, 1}, {3333, 1}, {2200, 65}}},
      {"gqa8_head128_long_block32", 16, 2, 128, 32, {{2500, 1}, {1, 1}, {2300, 40}}},
      {"gqa1_head64_long_block32", 8, 8, 64, 32, {{2049, 1}, {2100, 70}}},
      {"gqa8_head64_long_block16", 16, 2, 64, 16, {{4096, 1}, {2048, 2}, {2111, 66}}},
  };
}

class AttentionTest : public ::testing::TestWithParam<std::tuple<Scenario, Dtype>> {
 protected:
  std::mt19937 rng_{gpu_test::FreshSeed()};
};

// Runs every sequence of the scenario in one step (decode and prefill
// kernels both) once per decode split count, and checks every output row of
// each run against one reference.
void RunScenario(const Scenario& sc, Dtype dtype, const std::vector<int>& split_counts, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << sc.name << " " << cuda::DtypeName(dtype));
  const int hd = sc.head_dim, kv_dim = sc.n_kv_heads * hd, dim = sc.n_heads * hd;
  const int group = sc.n_heads / sc.n_kv_heads;
  const int bs = sc.block_size;
  int max_context = 1, total_blocks = 0, total_tokens = 0;
  for (const SeqSpec& s : sc.seqs) {
    max_context = std::max(max_context, s.context);
    total_blocks += (s.context + bs - 1) / bs;
    total_tokens += s.num_queries;
  }
  const int num_blocks = total_blocks + 5;
  std::vector<int> physical(num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);

  ModelConfig model;
  model.n_heads = sc.n_heads;
  model.n_kv_heads = sc.n_kv_heads;
  model.dim = dim;
  model.vocab_size = 100;
  model.max_seq_len = 8192;

  // Caches: owned slots random, the rest NaN.
  const size_t pool = size_t(num_blocks) * bs * kv_dim;
  std::vector<float> keys(pool, NAN), values(pool, NAN);
  std::vector<std::vector<int>> tables;
  StepBatch batch;
  int next_block = 0;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const SeqSpec& s : sc.seqs) {
    const int blocks = (s.context + bs - 1) / bs;
    tables.emplace_back(physical.begin() + next_block, physical.begin() + next_block + blocks);
    next_block += blocks;
    for (int p = 0; p < s.context; ++p) {
      const size_t slot = size_t(tables.back()[p / bs]) * bs + p % bs;
      for (int i = 0; i < kv_dim; ++i) {
        keys[slot * kv_dim + i] = gpu_test::RoundTo(dtype, normal(rng));
        values[slot * kv_dim + i] = gpu_test::RoundTo(dtype, normal(rng));
      }
    }
  }
  for (size_t i = 0; i < sc.seqs.size(); ++i) {
    std::vector<int> tokens(sc.seqs[i].num_queries, 7);
    batch.AddSequence(tokens, sc.seqs[i].context, tables[i], true);
  }
  const int stride = dim + 2 * kv_dim;
  const std::vector<float> qkv = RoundAll(dtype, gpu_test::RandomVector(size_t(total_tokens) * stride, rng));

  cuda::AttentionShape shape{sc.n_heads, sc.n_kv_heads, hd, bs};
  const cuda::PrefillPlan prefill_plan = cuda::PlanPrefill(shape);
  std::vector<std::vector<float>> runs;  // one output per split count
  for (const int num_splits : split_counts) {
    cuda::DecodePlan decode_plan;
    decode_plan.num_splits = num_splits;
    cuda::StepInputs inputs;
    ASSERT_TRUE(inputs.Init(total_tokens, static_cast<int>(sc.seqs.size()), (model.max_seq_len + bs - 1) / bs).ok());
    const absl::Status built = inputs.Build(batch, model, num_blocks, bs, num_blocks, prefill_plan, decode_plan, 0);
    ASSERT_TRUE(built.ok()) << built;
    INFERD_ASSERT_CUDA(inputs.Upload(0));

    DeviceBuffer d_qkv = Upload(dtype, qkv);
    DeviceBuffer d_k = Upload(dtype, keys);
    DeviceBuffer d_v = Upload(dtype, values);
    DeviceBuffer d_out(size_t(total_tokens) * dim * cuda::DtypeSize(dtype));
    const int num_decode = inputs.shape().num_decode;
    DeviceBuffer d_partial(size_t(std::max(num_decode, 1)) * sc.n_heads * num_splits * hd * sizeof(float));
    DeviceBuffer d_lse(size_t(std::max(num_decode, 1)) * sc.n_heads * num_splits * sizeof(float));
    INFERD_ASSERT_CUDA(cuda::PrepareAttentionDecode(dtype, shape));
    INFERD_ASSERT_CUDA(cuda::PrepareAttentionPrefill(dtype, shape));

    cuda::AttentionArgs args;
    args.dtype = dtype;
    args.shape = shape;
    args.qkv = d_qkv.get();
    args.qkv_stride = stride;
    args.k_pool = d_k.get();
    args.v_pool = d_v.get();
    args.out = d_out.get();
    args.batch = inputs.attention_batch();
    INFERD_ASSERT_CUDA(
        cuda::LaunchAttentionDecode(args, decode_plan, num_decode, d_partial.as<float>(), d_lse.as<float>(), 0));
    INFERD_ASSERT_CUDA(cuda::LaunchAttentionPrefill(args, prefill_plan, inputs.shape().num_tiles, 0));
    INFERD_ASSERT_CUDA(cudaDeviceSynchronize());
    runs.push_back(Download(dtype, d_out.get(), size_t(total_tokens) * dim));
  }

  // Reference, one sequence at a time so a failure names it; the error of
  // each (token, head) row on its own, the worst row reported.
  const double sqrt_hd = std::sqrt(static_cast<double>(hd));
  for (size_t si = 0; si < sc.seqs.size(); ++si) {
    const SequenceSlice& s = batch.sequences[si];
    std::vector<double> worst(runs.size(), 0.0);
    std::vector<int> worst_token(runs.size(), -1), worst_head(runs.size(), -1);
    for (int i = 0; i < s.num_tokens; ++i) {
      const int t = s.token_start + i;
      const int pos = s.context_len - s.num_tokens + i;
      for (int h = 0; h < sc.n_heads; ++h) {
        const float* q = &qkv[size_t(t) * stride + size_t(h) * hd];
        const int kv_offset = (h / group) * hd;
        std::vector<double> scores(pos + 1);
        double max_score = -INFINITY;
        for (int p = 0; p <= pos; ++p) {
          const float* k = &keys[(size_t(tables[si][p / bs]) * bs + p % bs) * kv_dim + kv_offset];
          double dot = 0.0;
          for (int d = 0; d < hd; ++d) dot += double{q[d]} * k[d];
          scores[p] = dot / sqrt_hd;
          max_score = std::max(max_score, scores[p]);
        }
        double sum = 0.0;
        for (double& x : scores) sum += (x = std::exp(x - max_score));
        std::vector<float> want(hd), row_got(hd);
        for (int d = 0; d < hd; ++d) {
          double o = 0.0;
          for (int p = 0; p <= pos; ++p) {
            o += scores[p] * values[(size_t(tables[si][p / bs]) * bs + p % bs) * kv_dim + kv_offset + d];
          }
          want[d] = static_cast<float>(o / sum);
        }
        for (size_t r = 0; r < runs.size(); ++r) {
          for (int d = 0; d < hd; ++d) row_got[d] = runs[r][size_t(t) * dim + size_t(h) * hd + d];
          const double error = gpu_test::RelativeError(row_got, want);
          if (!(error <= worst[r])) {  // NaN too
            worst[r] = error;
            worst_token[r] = i;
            worst_head[r] = h;
          }
        }
      }
    }
    for (size_t r = 0; r < runs.size(); ++r) {
      EXPECT_LE(worst[r], gpu_test::RowTolerance(dtype))
          << "sequence " << si << " (context " << s.context_len << ", new tokens " << s.num_tokens << ", "
          << split_counts[r] << " decode splits): worst row is new token " << worst_token[r] << ", head "
          << worst_head[r];
    }
  }
}

TEST_P(AttentionTest, DecodeAndPrefillMatchReference) {
  INFERD_REQUIRE_GPU();
  const auto& [scenario, dtype] = GetParam();
  RunScenario(scenario, dtype, {1, 5, cuda::kMaxDecodeSplits}, rng_);
}

TEST(AttentionPlan, DecodeChunksCoverTheContext) {
  // Host-only: needs no device.
  const cuda::AttentionShape shape{32, 8, 128, 16};
  for (int seqs : {1, 2, 7, 64, 256}) {
    const cuda::DecodePlan plan = cuda::PlanDecode(shape, seqs, 132, 8192);
    EXPECT_GE(plan.num_splits, 1);
    EXPECT_LE(plan.num_splits, cuda::kMaxDecodeSplits);
    for (int context : {1, 15, 16, 64, 1000, 8192}) {
      const int chunk = cuda::DecodeChunkTokens(plan, context);
      EXPECT_GE(int64_t{chunk} * plan.num_splits, context) << seqs << " " << context;
      EXPECT_EQ(chunk % 16, 0);
    }
  }
  EXPECT_EQ(cuda::PlanDecode(shape, 256, 132, 8192).num_splits, 1);
  EXPECT_GT(cuda::PlanDecode(shape, 1, 132, 8192).num_splits, 1);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Combine(::testing::ValuesIn(Scenarios()),
                                            ::testing::ValuesIn(gpu_test::AllDtypes())),
                         [](const ::testing::TestParamInfo<std::tuple<Scenario, Dtype>>& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::string(cuda::DtypeName(std::get<1>(info.param)));
                         });

}  // namespace
}  // namespace inferd
