#include "server/connection_limit.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace inferd {
namespace {

// Descriptors kept free for everything that is not a connection: model
// files, the metrics server, logs, gRPC's own pipes and eventfds.
constexpr uint64_t kReservedDescriptors = 64;

using Accept4Fn = int (*)(int, sockaddr*, socklen_t*, int);

Accept4Fn RealAccept4() {
  static const Accept4Fn real = reinterpret_cast<Accept4Fn>(dlsym(RTLD_NEXT, "accept4"));
  return real;
}

class ConnectionLimiter {
 public:
  static ConnectionLimiter& Get() {
    static ConnectionLimiter* limiter = new ConnectionLimiter();
    return *limiter;
  }

  void Start(int port, int max_connections) {
    absl::MutexLock lock(&mu_);
    port_ = port;
    max_connections_ = max_connections;
    if (spare_fd_ < 0) spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  int Accept(int listen_fd, sockaddr* address, socklen_t* length, int flags) {
    if (!Watched(listen_fd)) return RealAccept4()(listen_fd, address, length, flags);
    while (true) {
      int fd = RealAccept4()(listen_fd, address, length, flags);
      if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        if (!DropOneWithSpare(listen_fd)) return fd;  // nothing pending any more: EAGAIN for gRPC
        continue;
      }
      if (fd < 0) return fd;
      if (Admit(fd)) return fd;
      close(fd);
      refused_.fetch_add(1);
    }
  }

  int Live() {
    absl::MutexLock lock(&mu_);
    Sweep();
    return static_cast<int>(live_.size());
  }
  int64_t refused() const { return refused_.load(); }

  int CloseAll() {
    absl::MutexLock lock(&mu_);
    Sweep();
    for (const auto& [fd, inode] : live_) shutdown(fd, SHUT_RDWR);
    return static_cast<int>(live_.size());
  }

 private:
  // Whether `listen_fd` is bound to the port we limit (cached per descriptor).
  bool Watched(int listen_fd) {
    absl::MutexLock lock(&mu_);
    if (port_ <= 0) return false;
    sockaddr_storage bound{};
    socklen_t size = sizeof(bound);
    if (getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &size) != 0) return false;
    if (bound.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port) == port_;
    if (bound.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port) == port_;
    return false;
  }

  static ino_t Inode(int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? st.st_ino : 0;
  }

  // gRPC closes connections without telling us; a descriptor still open on
  // the same socket inode is the same connection.
  void Sweep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::erase_if(live_, [](const auto& entry) { return Inode(entry.first) != entry.second; });
  }

  bool Admit(int fd) {
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(live_.size()) >= max_connections_) Sweep();
    if (static_cast<int>(live_.size()) >= max_connections_) return false;
    live_[fd] = Inode(fd);
    return true;
  }

  // Out of descriptors: use the spare to take one pending connection off the
  // queue and close it. False if none was pending.
  bool DropOneWithSpare(int listen_fd) {
    absl::MutexLock lock(&mu_);
    if (spare_fd_ < 0) return false;
    close(spare_fd_);
    const int fd = RealAccept4()(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      refused_.fetch_add(1);
    }
    spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
  }

  absl::Mutex mu_;
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  int max_connections_ ABSL_GUARDED_BY(mu_) = 0;
  int spare_fd_ ABSL_GUARDED_BY(mu_) = -1;
  absl::flat_hash_map<int, ino_t> live_ ABSL_GUARDED_BY(mu_);  // descriptor -> socket inode
  std::atomic<int64_t> refused_{0};
};

}  // namespace

uint64_t RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

int LimitConnections(int port, int max_connections, uint64_t file_limit) {
  const uint64_t room = file_limit > 2 * kReservedDescriptors ? file_limit - kReservedDescriptors : file_limit / 2;
  const int cap = static_cast<int>(std::min<uint64_t>(max_connections, std::max<uint64_t>(room, 1)));
  ConnectionLimiter::Get().Start(port, cap);
  return cap;
}

int LiveConnections() { return ConnectionLimiter::Get().Live(); }
int CloseConnections() { return ConnectionLimiter::Get().CloseAll(); }
int64_t RefusedConnections() { return ConnectionLimiter::Get().refused(); }

}  // namespace inferd

// The wrapper gRPC's accept4() calls resolve to (see the header).
extern "C" int accept4(int fd, sockaddr* address, socklen_t* length, int flags) {
  return inferd::ConnectionLimiter::Get().Accept(fd, address, length, flags);
}
