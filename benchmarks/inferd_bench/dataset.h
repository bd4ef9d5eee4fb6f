// What inferd-bench sends: one BenchRequest per index. A synthetic dataset
// makes fresh random token prompts for every index; file datasets (JSONL of
// prompts, ShareGPT conversations) are read once, before the run, and cycle.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "inferd/v1/inference.pb.h"

namespace inferd::bench {

struct BenchRequest {
  // Exactly one of the two is the prompt: token ids (synthetic) or text.
  std::vector<int32_t> token_ids;
  std::string text;
  // Tokens to generate; 0 leaves it to the server (stops at EOS or its
  // default max_tokens). When set, EOS is ignored so the length is exact.
  int output_len = 0;

  inferd::v1::GenerateRequest ToProto() const;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  // The request for position `index` of the run (any index >= 0 is valid).
  virtual BenchRequest At(int64_t index) const = 0;
};

// Random token ids in [kFirstTokenId, vocab_size) so no prompt contains the
// special tokens (0 unk, 1 BOS, 2 EOS in llama vocabularies).
inline constexpr int kFirstTokenId = 3;

struct SyntheticSpec {
  int input_len = 128;
  int output_len = 128;
  double range_ratio = 0.0;
  int vocab_size = 32000;
  uint64_t seed = 0;
};

// Each index draws its own lengths and tokens from (seed, index): the same
// run twice sends the same requests, and no two prompts share a prefix, so
// the prefix cache does not flatter the numbers.
std::unique_ptr<Dataset> MakeSyntheticDataset(const SyntheticSpec& spec);

// Requests read from a file, sent in file order and cycled.
std::unique_ptr<Dataset> MakeListDataset(std::vector<BenchRequest> requests);

// One JSON object a line: {"prompt": "...", "output_len": N}; output_len is
// optional. Blank lines are skipped; any other bad line is an error that
// names its line number.
absl::StatusOr<std::vector<BenchRequest>> LoadJsonl(const std::string& path);

// Counts the tokens of `text` as the server's tokenizer does, without BOS.
using TokenCounter = std::function<absl::StatusOr<int>(const std::string& text)>;

struct ShareGptSpec {
  int max_requests = 1000;  // conversations to keep
  int max_context = 0;      // prompt + output must fit; 0: no limit
  uint64_t seed = 0;        // order in which conversations are drawn
};

// A ShareGPT JSON file: a list of {"conversations": [{"from": "human",
// "value": ...}, {"from": "gpt", "value": ...}, ...]}. The first human turn
// is the prompt, the reply to it sets the output length (its token count).
// As vLLM does, conversations are shuffled by seed and those with a prompt
// or reply under 4 tokens, or that do not fit the context, are skipped.
absl::StatusOr<std::vector<BenchRequest>> LoadShareGpt(const std::string& path, const ShareGptSpec& spec,
                                                       const TokenCounter& count_tokens);

}  // namespace inferd::bench
