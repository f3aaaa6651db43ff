// fuzz_config: petrel::loadConfig on arbitrary YAML text. The loader only
// takes a path, so the text goes into a memfd and is loaded through
// /proc/self/fd/N (no disk I/O).
//
// Checks: loading never crashes, aborts or lets an exception escape; an
// error is a value that starts with "PATH:LINE: " as config.h promises; a
// config that loads has at least one listener.
#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/config/config.h"

namespace {

int memFd() {
  static int fd = [] {
    int f = memfd_create("petrel-fuzz-config", 0);
    if (f < 0) {
      perror("memfd_create");
      abort();
    }
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memFd();
  if (ftruncate(fd, 0) != 0) abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);

  petrel::Config cfg;
  std::string error;
  if (petrel::loadConfig(path, cfg, error)) {
    if (cfg.listeners.empty()) abort();
    return 0;
  }
  // "PATH:LINE: ..."
  const std::string prefix = path + ":";
  if (error.compare(0, prefix.size(), prefix) != 0) abort();
  size_t i = prefix.size();
  if (i >= error.size() || !isdigit(static_cast<unsigned char>(error[i]))) abort();
  while (i < error.size() && isdigit(static_cast<unsigned char>(error[i]))) ++i;
  if (error.compare(i, 2, ": ") != 0) abort();
  return 0;
}
