#include "engine/model/weight_conversion.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/thread_pool.h"

namespace inferd {
namespace {

struct NamedTensor {
  std::string name;
  Tensor* t;
};

// Every tensor of `w` with its checkpoint-style name; a tied classifier is
// left out (it is re-pointed at the converted embedding).
void ListTensors(ModelWeights& w, bool tied, std::vector<NamedTensor>* matrices, std::vector<NamedTensor>* vectors) {
  matrices->push_back({"token_embedding", &w.token_embedding});
  if (!tied) matrices->push_back({"wcls", &w.wcls});
  vectors->push_back({"rms_final", &w.rms_final});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("layers.", i, ".");
    for (auto [name, t] : {std::pair{"wq", &l.wq}, {"wk", &l.wk}, {"wv", &l.wv}, {"wo", &l.wo}, {"w1", &l.w1},
                           {"w2", &l.w2}, {"w3", &l.w3}}) {
      matrices->push_back({p + name, t});
    }
    for (auto [name, t] : {std::pair{"rms_att", &l.rms_att}, {"rms_ffn", &l.rms_ffn}, {"bq", &l.bq}, {"bk", &l.bk},
                           {"bv", &l.bv}, {"q_norm", &l.q_norm}, {"k_norm", &l.k_norm}}) {
      vectors->push_back({p + name, t});
    }
  }
}

// Rows [r0, r1) of one tensor into its new buffer, in `type` and `layout`
// (for panels, r0 and r1 are whole panels; rows past the tensor's are the
// last panel's zero padding).
struct Job {
  Tensor src;
  char* dst;
  WeightType type;
  TensorLayout layout;
  int64_t r0, r1;
};

void RunJob(const Job& job) {
  const size_t dst_row = RowBytes(job.type, job.src.cols);
  if (job.layout == TensorLayout::kRowMajor && job.src.type == job.type) {
    std::memcpy(job.dst + static_cast<size_t>(job.r0) * dst_row, job.src.row(job.r0),
                static_cast<size_t>(job.r1 - job.r0) * dst_row);
    return;
  }
  const cpu::KernelSet& k = cpu::ActiveKernels();
  std::vector<float> row(static_cast<size_t>(job.src.cols));
  std::vector<char> converted(dst_row);
  for (int64_t r = job.r0; r < job.r1; ++r) {
    const bool padding = r >= job.src.rows;
    char* out = job.layout == TensorLayout::kRowMajor ? job.dst + static_cast<size_t>(r) * dst_row : converted.data();
    if (padding) {
      std::memset(out, 0, dst_row);
    } else if (job.src.type == job.type) {
      std::memcpy(out, job.src.row(r), dst_row);
    } else {
      k[job.src.type].to_float(job.src.row(r), row.data(), job.src.cols);
      k[job.type].from_float(row.data(), out, job.src.cols);
    }
    if (job.layout == TensorLayout::kPanels16) ScatterPanelRow(job.type, job.src.cols, r, out, job.dst);
  }
}

// Where each matrix goes: its type and layout.
struct Target {
  WeightType type;
  TensorLayout layout;
};

// A copy of `src` with every matrix as `target` says and every vector
// copied, in one buffer the copy's `owners` hold: nothing of `src` is kept.
// Every tensor in one buffer on huge pages (a decode step streams all of
// them; per-tensor buffers of a few MiB would mostly miss the 2 MiB
// boundaries), each on a 64-byte line, filled in chunks of about 256K
// elements by every thread: converting a 7B model is seconds of work.
absl::StatusOr<std::unique_ptr<ModelWeights>> Rebuild(const ModelWeights& src, WeightType dtype,
                                                      const std::function<Target(const NamedTensor&)>& target,
                                                      int num_threads) {
  auto w = std::make_unique<ModelWeights>();
  w->config = src.config;
  w->dtype = dtype;
  w->token_embedding = src.token_embedding;
  w->wcls = src.wcls;
  w->rms_final = src.rms_final;
  w->layers = src.layers;
  const bool tied = src.wcls.data == src.token_embedding.data;
  std::vector<NamedTensor> matrices, vectors;
  ListTensors(*w, tied, &matrices, &vectors);
  struct Placement {
    Tensor* t;
    Target to;
    size_t offset;
  };
  std::vector<Placement> placements;
  size_t total = 0;
  auto plan = [&](Tensor& t, Target to) {
    if (t.empty()) return;
    placements.push_back({&t, to, total});
    const Tensor placed{to.type, nullptr, t.rows, t.cols, to.layout};
    total += (placed.bytes() + 63) / 64 * 64;
  };
  for (NamedTensor& m : matrices) plan(*m.t, target(m));
  // Norms and biases are F32 already (loaders widen them); copied so that
  // nothing points into `src`'s buffers.
  for (NamedTensor& v : vectors) plan(*v.t, Target{WeightType::kF32, TensorLayout::kRowMajor});
  constexpr size_t kLine = 64;
  auto buffer = std::shared_ptr<char>(static_cast<char*>(std::aligned_alloc(kLine, std::max(total, kLine))), std::free);
  if (buffer == nullptr) return absl::ResourceExhaustedError(absl::StrCat(total, " bytes for the weights not available"));
  AdviseHugePages(buffer.get(), total);
  w->owners.push_back(buffer);
  std::vector<Job> jobs;
  for (const Placement& p : placements) {
    Tensor& t = *p.t;
    char* data = buffer.get() + p.offset;
    const Tensor placed{p.to.type, data, t.rows, t.cols, p.to.layout};
    int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(t.cols, 1));
    if (p.to.layout == TensorLayout::kPanels16) chunk = (chunk + kPanelRows - 1) / kPanelRows * kPanelRows;
    for (int64_t r = 0; r < placed.stored_rows(); r += chunk) {
      jobs.push_back({t, data, p.to.type, p.to.layout, r, std::min(placed.stored_rows(), r + chunk)});
    }
    t = placed;
  }
  if (tied) w->wcls = w->token_embedding;
  cpu::ThreadPool pool(num_threads);
  pool.ParallelFor(static_cast<int64_t>(jobs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) RunJob(jobs[j]);
  });
  return w;
}

}  // namespace

absl::StatusOr<std::optional<WeightType>> ParseWeightDtype(std::string_view name) {
  if (name == "auto") return std::nullopt;
  for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    if (name == WeightTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype ", std::string(name), ": expected auto, float32, float16, bfloat16 or q8_0"));
}

absl::StatusOr<ConvertedWeights> ConvertWeights(std::shared_ptr<const ModelWeights> src, WeightType type,
                                                int num_threads) {
  const auto start = std::chrono::steady_clock::now();
  ModelWeights listed = *src;
  const bool tied = src->wcls.data == src->token_embedding.data;
  std::vector<NamedTensor> matrices, vectors;
  ListTensors(listed, tied, &matrices, &vectors);

  bool all_there = true;
  for (const NamedTensor& m : matrices) {
    if (m.t->empty()) continue;
    all_there = all_there && m.t->type == type;
    if (type == WeightType::kQ8_0 && m.t->cols % kQ8_0BlockSize != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--dtype q8_0: tensor ", m.name, " has ", m.t->cols,
                                                     " columns, not a multiple of ", kQ8_0BlockSize,
                                                     " (Q8_0 blocks); serve this model as float32, float16 or "
                                                     "bfloat16"));
    }
  }
  if (all_there && src->dtype == type) return ConvertedWeights{std::move(src), ""};

  absl::StatusOr<std::unique_ptr<ModelWeights>> converted =
      Rebuild(*src, type, [type](const NamedTensor&) { return Target{type, TensorLayout::kRowMajor}; }, num_threads);
  if (!converted.ok()) return converted.status();
  int64_t elements = 0;
  for (const NamedTensor& m : matrices) {
    if (!m.t->empty()) elements += m.t->rows * m.t->cols;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string note = absl::StrFormat("converted %.1fM weights %s -> %s in %.2f s", elements / 1e6,
                                     std::string(WeightTypeName(src->dtype)), std::string(WeightTypeName(type)),
                                     seconds);
  return ConvertedWeights{std::shared_ptr<const ModelWeights>(*std::move(converted)), std::move(note)};
}

absl::StatusOr<std::shared_ptr<const ModelWeights>> PackWeightsForKernels(std::shared_ptr<const ModelWeights> src,
                                                                          const cpu::KernelSet& kernels,
                                                                          int num_threads) {
  const bool tied = src->wcls.data == src->token_embedding.data;
  auto target = [&](const NamedTensor& m) {
    // An untied embedding is only looked up, a row at a time: row-major.
    const bool packs = kernels[m.t->type].gemm_panels != nullptr && (tied || m.name != "token_embedding");
    return Target{m.t->type, packs ? TensorLayout::kPanels16 : TensorLayout::kRowMajor};
  };
  ModelWeights listed = *src;
  std::vector<NamedTensor> matrices, vectors;
  ListTensors(listed, tied, &matrices, &vectors);
  bool any = false;
  for (const NamedTensor& m : matrices) any = any || (!m.t->empty() && target(m).layout == TensorLayout::kPanels16);
  if (!any) return src;
  absl::StatusOr<std::unique_ptr<ModelWeights>> packed = Rebuild(*src, src->dtype, target, num_threads);
  if (!packed.ok()) return packed.status();
  return std::shared_ptr<const ModelWeights>(*std::move(packed));
}

}  // namespace inferd
