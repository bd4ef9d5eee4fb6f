#include "engine/tokenizer/hf_normalizer.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include <utf8proc.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/hf_json.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

class Nfc : public HfNormalizer {
 public:
  std::string Normalize(std::string text) const override {
    // ASCII is already NFC; most text is, and this keeps it cheap.
    bool ascii = true;
    for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
    if (ascii) return text;
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &out,
                                            static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) return text;  // invalid UTF-8 never reaches here (Encode repairs it)
    std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    std::free(out);
    return result;
  }
};

class Prepend : public HfNormalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Normalize(std::string text) const override {
    if (text.empty()) return text;
    return prefix_ + text;
  }

 private:
  std::string prefix_;
};

class Replace : public HfNormalizer {
 public:
  Replace(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::string Normalize(std::string text) const override {
    return absl::StrReplaceAll(text, {{from_, to_}});
  }

 private:
  std::string from_, to_;
};

class Lowercase : public HfNormalizer {
 public:
  std::string Normalize(std::string text) const override {
    bool ascii = true;
    for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
    if (ascii) return absl::AsciiStrToLower(text);
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      utf8proc_int32_t cp = 0;
      utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                            static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
      if (n <= 0) {
        out += text[i++];
        continue;
      }
      utf8proc_uint8_t buf[4];
      out.append(reinterpret_cast<char*>(buf), utf8proc_encode_char(utf8proc_tolower(cp), buf));
      i += static_cast<size_t>(n);
    }
    return out;
  }
};

class Sequence : public HfNormalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<HfNormalizer>> steps) : steps_(std::move(steps)) {}
  std::string Normalize(std::string text) const override {
    for (const auto& step : steps_) text = step->Normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<HfNormalizer>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HfNormalizer>> MakeHfNormalizer(const nlohmann::json& config,
                                                               const std::string& json_path) {
  if (config.is_null()) return nullptr;
  absl::StatusOr<std::string> type = JsonString(config, "type", json_path);
  if (!type.ok()) return type.status();
  if (*type == "NFC") return std::make_unique<Nfc>();
  if (*type == "Lowercase") return std::make_unique<Lowercase>();
  if (*type == "Prepend") {
    absl::StatusOr<std::string> prefix = JsonString(config, "prepend", json_path);
    if (!prefix.ok()) return prefix.status();
    return std::make_unique<Prepend>(*prefix);
  }
  if (*type == "Replace") {
    absl::StatusOr<std::string> from = JsonLiteralPattern(config, json_path);
    if (!from.ok()) return from.status();
    absl::StatusOr<std::string> to = JsonString(config, "content", json_path);
    if (!to.ok()) return to.status();
    return std::make_unique<Replace>(*from, *to);
  }
  if (*type == "Sequence") {
    const std::string list_path = json_path + ".normalizers";
    if (!config.contains("normalizers") || !config["normalizers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(list_path, ": expected an array"));
    }
    std::vector<std::unique_ptr<HfNormalizer>> steps;
    for (size_t i = 0; i < config["normalizers"].size(); ++i) {
      auto step = MakeHfNormalizer(config["normalizers"][i], absl::StrCat(list_path, "[", i, "]"));
      if (!step.ok()) return step.status();
      if (*step != nullptr) steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return absl::UnimplementedError(absl::StrCat(json_path, ".type: normalizer \"", *type,
                                               "\" is not supported (NFC, Lowercase, Prepend, Replace, Sequence are)"));
}

}  // namespace inferd
