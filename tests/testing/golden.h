// The reference greedy outputs of stories260K (../shared/golden), one JSON
// object per prompt, for every test that checks a path against them.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace inferd::testing {

inline std::vector<nlohmann::json> GoldenLines() {
  std::ifstream in(INFERD_SHARED_DIR "/golden/stories260K_greedy_public.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

}  // namespace inferd::testing
