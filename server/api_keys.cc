#include "server/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace inferd {
namespace {

constexpr char kDefaultTenant[] = "default";

std::array<unsigned char, 32> Digest(const std::string& key) {
  std::array<unsigned char, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
  return digest;
}

bool Stat(const std::string& path, struct stat* st) { return stat(path.c_str(), st) == 0; }

}  // namespace

std::optional<std::string> BearerToken(const std::string& authorization) {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(authorization).substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  std::string token(absl::StripAsciiWhitespace(absl::string_view(authorization).substr(kScheme.size())));
  if (token.empty()) return std::nullopt;
  return token;
}

std::string TenantScope(const std::string& tenant) { return absl::StrCat("tenant:", tenant); }

absl::StatusOr<std::vector<ApiKeys::Entry>> ApiKeys::Parse(const std::string& path, const std::string& text) {
  std::vector<Entry> entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> words = absl::StrSplit(line, absl::ByAnyChar(" \t\r\f\v"), absl::SkipEmpty());
    if (words.empty()) continue;
    if (words.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": expected a key and at most one tenant name"));
    }
    entries.push_back(Entry{.digest = Digest(std::string(words[0])),
                            .tenant = words.size() == 2 ? std::string(words[1]) : kDefaultTenant});
  }
  if (entries.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": holds no API key"));
  return entries;
}

absl::StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::Load(const std::string& path) {
  std::unique_ptr<ApiKeys> keys(new ApiKeys(path));
  if (absl::Status status = keys->Reload(); !status.ok()) return status;
  return keys;
}

absl::Status ApiKeys::Reload() {
  struct stat st {};
  if (!Stat(path_, &st)) return absl::NotFoundError(absl::StrCat("--api-keys-file ", path_, ": cannot stat"));
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("--api-keys-file ", path_, ": cannot read"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<std::vector<Entry>> entries = Parse(path_, text);
  absl::MutexLock lock(&mu_);
  stamp_ = FileStamp{.mtime = st.st_mtim, .size = st.st_size, .inode = st.st_ino};
  last_check_ = absl::Now();
  if (!entries.ok()) {
    if (!entries_.empty()) spdlog::error("API keys not reloaded, the old ones stay: {}", std::string(entries.status().message()));
    return entries.status();
  }
  if (!entries_.empty()) spdlog::info("API keys reloaded from {}: {} keys", path_, entries->size());
  entries_ = *std::move(entries);
  return absl::OkStatus();
}

void ApiKeys::ReloadIfChanged() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - last_check_ < absl::Seconds(1)) return;
    last_check_ = now;
    struct stat st {};
    if (!Stat(path_, &st)) return;  // being replaced: keep the keys we have
    if (FileStamp{.mtime = st.st_mtim, .size = st.st_size, .inode = st.st_ino} == stamp_) return;
  }
  Reload().IgnoreError();  // logged there; the old keys stay
}

std::optional<std::string> ApiKeys::TenantOf(const std::string& key) {
  ReloadIfChanged();
  const std::array<unsigned char, 32> digest = Digest(key);
  absl::MutexLock lock(&mu_);
  // Every entry is compared, all 32 bytes, whatever matched before.
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {
    const bool equal = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (equal && match == nullptr) match = &entry;
  }
  if (match == nullptr) return std::nullopt;
  return match->tenant;
}

}  // namespace inferd
