#include "engine/tokenizer/hf_decoder.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/hf_json.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

// "<0xAB>" -> 0xAB.
std::optional<char> ParseByteToken(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return std::nullopt;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<char>(value);
}

}  // namespace

absl::StatusOr<HfDecoder> HfDecoder::FromJson(const nlohmann::json& config, const std::string& json_path) {
  HfDecoder decoder;
  if (config.is_null()) return decoder;
  if (absl::Status s = decoder.Add(config, json_path); !s.ok()) return s;
  return decoder;
}

absl::Status HfDecoder::Add(const nlohmann::json& config, const std::string& json_path) {
  absl::StatusOr<std::string> type = JsonString(config, "type", json_path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const std::string list_path = json_path + ".decoders";
    if (!config.contains("decoders") || !config["decoders"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(list_path, ": expected an array"));
    }
    for (size_t i = 0; i < config["decoders"].size(); ++i) {
      if (absl::Status s = Add(config["decoders"][i], absl::StrCat(list_path, "[", i, "]")); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "ByteLevel") {
    steps_.push_back({Step::Kind::kByteLevel, "", ""});
    return absl::OkStatus();
  }
  if (*type == "ByteFallback") {
    steps_.push_back({Step::Kind::kByteFallback, "", ""});
    return absl::OkStatus();
  }
  if (*type == "Fuse") return absl::OkStatus();  // pieces are concatenated anyway
  if (*type == "Replace") {
    absl::StatusOr<std::string> from = JsonLiteralPattern(config, json_path);
    if (!from.ok()) return from.status();
    absl::StatusOr<std::string> to = JsonString(config, "content", json_path);
    if (!to.ok()) return to.status();
    steps_.push_back({Step::Kind::kReplace, *from, *to});
    return absl::OkStatus();
  }
  if (*type == "Strip") {
    absl::StatusOr<std::string> content = JsonString(config, "content", json_path);
    if (!content.ok()) return content.status();
    // Counts of characters; a float (1e76) or a huge value is refused, not cast.
    absl::StatusOr<int64_t> start = JsonInt(config, "start", json_path, 0, 1 << 20, 0);
    if (!start.ok()) return start.status();
    absl::StatusOr<int64_t> stop = JsonInt(config, "stop", json_path, 0, 1 << 20, 0);
    if (!stop.ok()) return stop.status();
    if (content->size() != 1 || *stop != 0) {
      return absl::UnimplementedError(absl::StrCat(
          json_path, ": only Strip of one ASCII character at the start (\"stop\": 0) is supported"));
    }
    strip_start_ = static_cast<int>(*start);
    strip_char_ = (*content)[0];
    return absl::OkStatus();
  }
  if (*type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (config.contains("replacement")) {
      absl::StatusOr<std::string> r = JsonString(config, "replacement", json_path);
      if (!r.ok()) return r.status();
      replacement = *r;
    }
    steps_.push_back({Step::Kind::kReplace, replacement, " "});
    bool strip = true;
    if (config.contains("prepend_scheme") && config["prepend_scheme"] == "never") strip = false;
    if (config.contains("add_prefix_space") && config["add_prefix_space"] == false) strip = false;
    if (strip) {
      strip_start_ = 1;
      strip_char_ = ' ';
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrCat(json_path, ".type: decoder \"", *type,
                                               "\" is not supported (ByteLevel, Replace, ByteFallback, Fuse, "
                                               "Strip, Metaspace, Sequence are)"));
}

std::string HfDecoder::DecodePiece(const std::string& piece, bool added) const {
  std::string out = piece;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel:
        if (!added) {
          if (std::optional<std::string> bytes = FromByteLevel(out)) out = *std::move(bytes);
        }
        break;
      case Step::Kind::kReplace:
        out = absl::StrReplaceAll(out, {{step.from, step.to}});
        break;
      case Step::Kind::kByteFallback:
        if (std::optional<char> byte = ParseByteToken(out)) out = std::string(1, *byte);
        break;
    }
  }
  return out;
}

}  // namespace inferd
