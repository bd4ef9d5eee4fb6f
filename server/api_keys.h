// API keys (--api-keys-file): one key per line, optionally followed by
// whitespace and a tenant name; '#' starts a comment. The file is read at
// start and again whenever its modification time or size changes (checked at
// most once a second, on use) or Reload() is called (SIGHUP). Keys are
// compared in constant time, and never logged: errors name the file and the
// line number only.
#pragma once

#include <sys/types.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace inferd {

class ApiKeys {
 public:
  // Reads `path`; an error (naming the path and line) if it cannot be read,
  // holds no key, or a line has more than a key and a tenant.
  static absl::StatusOr<std::unique_ptr<ApiKeys>> Load(const std::string& path);

  // The tenant of `key` ("default" for a key listed without one), or nullopt
  // for a key not listed. The time taken does not depend on where, or
  // whether, the key matches.
  std::optional<std::string> TenantOf(const std::string& key);

  // Re-reads the file now; on error the keys in use stay and the error is
  // returned (and logged, without keys).
  absl::Status Reload();

  const std::string& path() const { return path_; }

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;  // SHA-256 of the key: every compare is 32 bytes
    std::string tenant;
  };
  struct FileStamp {
    timespec mtime{};
    off_t size = -1;
    ino_t inode = 0;
    bool operator==(const FileStamp& o) const {
      return mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec && size == o.size &&
             inode == o.inode;
    }
  };

  explicit ApiKeys(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<std::vector<Entry>> Parse(const std::string& path, const std::string& text);
  void ReloadIfChanged() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  absl::Time last_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The request-id scope (request_ids.h) of a tenant's calls, on every protocol.
std::string TenantScope(const std::string& tenant);

// The value of an "authorization: Bearer KEY" header: KEY, or nullopt if the
// header is not a bearer token.
std::optional<std::string> BearerToken(const std::string& authorization);

}  // namespace inferd
