#include "engine/tokenizer/hf_pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/hf_json.h"
#include "engine/tokenizer/regex.h"
#include "nlohmann/json.hpp"

namespace inferd {
namespace {

// GPT-2's word regex, used by ByteLevel with use_regex.
constexpr char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Isolated: matches and the text between them are words. Removed: only the
// text between matches. `invert` swaps the roles of matches and gaps.
class Split : public HfPreTokenizer {
 public:
  Split(Regex regex, bool remove_matches, bool invert)
      : regex_(std::move(regex)), remove_matches_(remove_matches), invert_(invert) {}

  void PreTokenize(std::vector<std::string>* words, bool) const override {
    std::vector<std::string> out;
    out.reserve(words->size() * 2);
    for (const std::string& word : *words) {
      const std::string_view text = word;
      size_t last = 0;
      auto emit = [&](size_t begin, size_t end, bool is_match) {
        if (begin == end) return;
        if (is_match != invert_ || !remove_matches_) out.emplace_back(text.substr(begin, end - begin));
      };
      regex_.ForEachMatch(text, [&](const Regex::Match& m) {
        emit(last, m.begin, false);
        emit(m.begin, m.end, true);
        last = m.end;
      });
      emit(last, text.size(), false);
    }
    *words = std::move(out);
  }

 private:
  Regex regex_;
  bool remove_matches_;
  bool invert_;
};

class ByteLevel : public HfPreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::unique_ptr<Split> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}

  void PreTokenize(std::vector<std::string>* words, bool first_section) const override {
    if (add_prefix_space_) {
      for (std::string& w : *words) {
        if (w.empty() || w.front() != ' ') w = " " + w;
      }
    }
    if (split_ != nullptr) split_->PreTokenize(words, first_section);
    for (std::string& w : *words) w = ToByteLevel(w);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Split> split_;
};

// Spaces become `replacement`; a word gets one in front per prepend_scheme;
// with `split`, each word is cut before every replacement character.
class Metaspace : public HfPreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}

  void PreTokenize(std::vector<std::string>* words, bool first_section) const override {
    std::vector<std::string> out;
    for (std::string& word : *words) {
      std::string w = absl::StrReplaceAll(word, {{" ", replacement_}});
      const bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && first_section);
      if (prepend && w.compare(0, replacement_.size(), replacement_) != 0) w = replacement_ + w;
      if (!split_) {
        out.push_back(std::move(w));
        continue;
      }
      size_t start = 0;
      for (size_t at = w.find(replacement_, 1); at != std::string::npos; at = w.find(replacement_, at + 1)) {
        out.push_back(w.substr(start, at - start));
        start = at;
      }
      if (start < w.size()) out.push_back(w.substr(start));
    }
    *words = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class Sequence : public HfPreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<HfPreTokenizer>> steps) : steps_(std::move(steps)) {}
  void PreTokenize(std::vector<std::string>* words, bool first_section) const override {
    for (const auto& step : steps_) step->PreTokenize(words, first_section);
  }

 private:
  std::vector<std::unique_ptr<HfPreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<HfPreTokenizer>> MakeSplit(const nlohmann::json& config, const std::string& path) {
  std::string pattern;
  if (config.contains("pattern") && config["pattern"].is_object() && config["pattern"].contains("Regex")) {
    if (!config["pattern"]["Regex"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".pattern.Regex: expected a string"));
    }
    pattern = config["pattern"]["Regex"].get<std::string>();
  } else {
    absl::StatusOr<std::string> literal = JsonLiteralPattern(config, path);
    if (!literal.ok()) return literal.status();
    pattern = Regex::Quote(*literal);
  }
  absl::StatusOr<Regex> regex = Regex::Compile(pattern);
  if (!regex.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ".pattern: ", regex.status().message()));
  absl::StatusOr<std::string> behavior = JsonString(config, "behavior", path);
  if (!behavior.ok()) return behavior.status();
  if (*behavior != "Isolated" && *behavior != "Removed") {
    return absl::UnimplementedError(absl::StrCat(path, ".behavior: \"", *behavior,
                                                 "\" is not supported (Isolated and Removed are)"));
  }
  absl::StatusOr<bool> invert = JsonBool(config, "invert", path, false);
  if (!invert.ok()) return invert.status();
  return std::make_unique<Split>(*std::move(regex), *behavior == "Removed", *invert);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfPreTokenizer>> MakeHfPreTokenizer(const nlohmann::json& config,
                                                                   const std::string& json_path) {
  if (config.is_null()) return nullptr;
  absl::StatusOr<std::string> type = JsonString(config, "type", json_path);
  if (!type.ok()) return type.status();
  if (*type == "Split") return MakeSplit(config, json_path);
  if (*type == "ByteLevel") {
    absl::StatusOr<bool> prefix = JsonBool(config, "add_prefix_space", json_path, true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<bool> use_regex = JsonBool(config, "use_regex", json_path, true);
    if (!use_regex.ok()) return use_regex.status();
    std::unique_ptr<Split> split;
    if (*use_regex) {
      absl::StatusOr<Regex> regex = Regex::Compile(kGpt2Pattern);
      if (!regex.ok()) return regex.status();
      split = std::make_unique<Split>(*std::move(regex), /*remove_matches=*/false, /*invert=*/false);
    }
    return std::make_unique<ByteLevel>(*prefix, std::move(split));
  }
  if (*type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";  // U+2581
    if (config.contains("replacement")) {
      absl::StatusOr<std::string> r = JsonString(config, "replacement", json_path);
      if (!r.ok()) return r.status();
      replacement = *r;
    }
    Metaspace::Prepend prepend = Metaspace::Prepend::kAlways;
    if (config.contains("prepend_scheme")) {
      absl::StatusOr<std::string> scheme = JsonString(config, "prepend_scheme", json_path);
      if (!scheme.ok()) return scheme.status();
      if (*scheme == "first") {
        prepend = Metaspace::Prepend::kFirst;
      } else if (*scheme == "never") {
        prepend = Metaspace::Prepend::kNever;
      } else if (*scheme != "always") {
        return absl::InvalidArgumentError(absl::StrCat(json_path, ".prepend_scheme: \"", *scheme,
                                                       "\" is not always, first or never"));
      }
    } else {
      // Older files: add_prefix_space (default true) instead of a scheme.
      absl::StatusOr<bool> add = JsonBool(config, "add_prefix_space", json_path, true);
      if (!add.ok()) return add.status();
      if (!*add) prepend = Metaspace::Prepend::kNever;
    }
    absl::StatusOr<bool> split = JsonBool(config, "split", json_path, true);
    if (!split.ok()) return split.status();
    return std::make_unique<Metaspace>(replacement, prepend, *split);
  }
  if (*type == "Sequence") {
    const std::string list_path = json_path + ".pretokenizers";
    if (!config.contains("pretokenizers") || !config["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(list_path, ": expected an array"));
    }
    std::vector<std::unique_ptr<HfPreTokenizer>> steps;
    for (size_t i = 0; i < config["pretokenizers"].size(); ++i) {
      auto step = MakeHfPreTokenizer(config["pretokenizers"][i], absl::StrCat(list_path, "[", i, "]"));
      if (!step.ok()) return step.status();
      if (*step != nullptr) steps.push_back(*std::move(step));
    }
    return std::make_unique<Sequence>(std::move(steps));
  }
  return absl::UnimplementedError(absl::StrCat(json_path, ".type: pre-tokenizer \"", *type,
                                               "\" is not supported (Split, ByteLevel, Metaspace, Sequence are)"));
}

}  // namespace inferd
