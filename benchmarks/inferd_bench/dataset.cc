#include "benchmarks/inferd_bench/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace inferd::bench {
namespace {

class SyntheticDataset final : public Dataset {
 public:
  explicit SyntheticDataset(const SyntheticSpec& spec) : spec_(spec) {}

  BenchRequest At(int64_t index) const override {
    // A generator per index (not one shared stream) so that At() is
    // independent of the order it is called in.
    std::seed_seq seq{static_cast<uint32_t>(spec_.seed), static_cast<uint32_t>(spec_.seed >> 32),
                      static_cast<uint32_t>(index), static_cast<uint32_t>(static_cast<uint64_t>(index) >> 32)};
    std::mt19937_64 rng(seq);
    BenchRequest request;
    const int input_len = DrawLength(spec_.input_len, &rng);
    request.output_len = DrawLength(spec_.output_len, &rng);
    std::uniform_int_distribution<int32_t> token(kFirstTokenId, std::max(kFirstTokenId, spec_.vocab_size - 1));
    request.token_ids.resize(input_len);
    for (int32_t& id : request.token_ids) id = token(rng);
    return request;
  }

 private:
  int DrawLength(int length, std::mt19937_64* rng) const {
    if (spec_.range_ratio <= 0.0) return length;
    const int low = std::max(1, static_cast<int>(std::lround(length * (1.0 - spec_.range_ratio))));
    const int high = std::max(low, static_cast<int>(std::lround(length * (1.0 + spec_.range_ratio))));
    return std::uniform_int_distribution<int>(low, high)(*rng);
  }

  SyntheticSpec spec_;
};

class ListDataset final : public Dataset {
 public:
  explicit ListDataset(std::vector<BenchRequest> requests) : requests_(std::move(requests)) {}
  BenchRequest At(int64_t index) const override { return requests_[index % requests_.size()]; }

 private:
  std::vector<BenchRequest> requests_;
};

}  // namespace

inferd::v1::GenerateRequest BenchRequest::ToProto() const {
  inferd::v1::GenerateRequest proto;
  if (!token_ids.empty()) {
    proto.mutable_token_ids()->mutable_ids()->Assign(token_ids.begin(), token_ids.end());
  } else {
    proto.set_text(text);
  }
  if (output_len > 0) {
    proto.mutable_stopping()->set_max_tokens(output_len);
    proto.mutable_stopping()->set_ignore_eos(true);
  }
  return proto;
}

std::unique_ptr<Dataset> MakeSyntheticDataset(const SyntheticSpec& spec) {
  return std::make_unique<SyntheticDataset>(spec);
}

std::unique_ptr<Dataset> MakeListDataset(std::vector<BenchRequest> requests) {
  return std::make_unique<ListDataset>(std::move(requests));
}

absl::StatusOr<std::vector<BenchRequest>> LoadJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--dataset-path: cannot open ", path));
  std::vector<BenchRequest> requests;
  std::string line;
  for (int line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = [&] { return absl::StrCat(path, ":", line_number, ": "); };
    const nlohmann::json object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!object.is_object()) return absl::InvalidArgumentError(absl::StrCat(where(), "not a JSON object"));
    const auto prompt = object.find("prompt");
    if (prompt == object.end() || !prompt->is_string() || prompt->get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where(), "needs a non-empty string \"prompt\""));
    }
    BenchRequest request;
    request.text = prompt->get<std::string>();
    if (const auto len = object.find("output_len"); len != object.end() && !len->is_null()) {
      if (!len->is_number_integer() || len->get<int64_t>() < 1 || len->get<int64_t>() > (1 << 24)) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "\"output_len\" must be an integer in [1, 2^24]"));
      }
      request.output_len = len->get<int>();
    }
    requests.push_back(std::move(request));
  }
  if (requests.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> LoadShareGpt(const std::string& path, const ShareGptSpec& spec,
                                                       const TokenCounter& count_tokens) {
  // The files are JSON arrays of 100 MB and more; reading the whole array is
  // still the simplest correct thing, and happens once, before the run.
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--dataset-path: cannot open ", path));
  const nlohmann::json root = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!root.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON array (ShareGPT format)"));

  // (prompt, reply) of every conversation that has both.
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const nlohmann::json& entry : root) {
    if (!entry.is_object() || !entry.contains("conversations") || !entry["conversations"].is_array()) continue;
    const nlohmann::json& turns = entry["conversations"];
    for (size_t i = 0; i + 1 < turns.size(); ++i) {
      const nlohmann::json& turn = turns[i];
      if (!turn.is_object() || turn.value("from", "") != "human") continue;
      const nlohmann::json& reply = turns[i + 1];
      if (turn.contains("value") && turn["value"].is_string() && reply.is_object() && reply.contains("value") &&
          reply["value"].is_string()) {
        pairs.emplace_back(turn["value"].get<std::string>(), reply["value"].get<std::string>());
      }
      break;
    }
  }
  std::shuffle(pairs.begin(), pairs.end(), std::mt19937_64(spec.seed));

  std::vector<BenchRequest> requests;
  for (const auto& [prompt, reply] : pairs) {
    if (static_cast<int>(requests.size()) >= spec.max_requests) break;
    absl::StatusOr<int> prompt_len = count_tokens(prompt);
    if (!prompt_len.ok()) return prompt_len.status();
    absl::StatusOr<int> output_len = count_tokens(reply);
    if (!output_len.ok()) return output_len.status();
    if (*prompt_len < 4 || *output_len < 4) continue;
    // +1: the server puts BOS before a text prompt.
    if (spec.max_context > 0 && *prompt_len + 1 + *output_len > spec.max_context) continue;
    BenchRequest request;
    request.text = prompt;
    request.output_len = *output_len;
    requests.push_back(std::move(request));
  }
  if (requests.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no usable conversation (a human turn and its reply)"));
  }
  return requests;
}

}  // namespace inferd::bench
