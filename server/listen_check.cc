#include "server/listen_check.h"

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace inferd {

std::string JoinHostPort(const std::string& host, int port) {
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::Status CheckCanListen(const std::string& what, const std::string& host, int port) {
  const std::string address = JoinHostPort(host, port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string bare = absl::StartsWith(host, "[") && absl::EndsWith(host, "]") ? host.substr(1, host.size() - 2)
                                                                                   : host;
  if (const int error = getaddrinfo(bare.c_str(), std::to_string(port).c_str(), &hints, &found); error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot listen on ", address, ": --host '", host, "' is not an address (", gai_strerror(error), ")"));
  }
  absl::Status status = absl::OkStatus();
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // as gRPC does: TIME_WAIT is no conflict
    const bool bound = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && (port == 0 || listen(fd, 1) == 0);
    const int error = errno;
    close(fd);
    if (bound) {
      status = absl::OkStatus();
      break;
    }
    std::string why = strerror(error);
    if (error == EADDRINUSE) why = "the port is already in use (by another process, or another inferd)";
    if (error == EADDRNOTAVAIL) why = "not an address of this machine";
    if (error == EACCES) why = "permission denied (ports below 1024 need privileges)";
    status = absl::UnavailableError(absl::StrCat(what, ": cannot listen on ", address, ": ", why));
  }
  freeaddrinfo(found);
  return status;
}

}  // namespace inferd
