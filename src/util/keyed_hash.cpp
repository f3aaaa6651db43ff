#include "src/util/keyed_hash.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

namespace petrel {

namespace {

bool fromKernel(unsigned char* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(r);
  }
  if (got == n) return true;
  // A kernel without getrandom(2) (before 3.17): the device.
  FILE* f = std::fopen("/dev/urandom", "rb");
  if (!f) return false;
  const bool ok = std::fread(out, 1, n, f) == n;
  std::fclose(f);
  return ok;
}

}  // namespace

SipKey drawSipKey() {
  SipKey k;
  unsigned char bytes[16];
  if (fromKernel(bytes, sizeof bytes)) {
    std::memcpy(&k.k0, bytes, 8);
    std::memcpy(&k.k1, bytes + 8, 8);
  } else {
    // No random source at all (a chroot without /dev): the clock and an
    // address, which at least differ between runs.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    k.k0 = static_cast<uint64_t>(ts.tv_nsec) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(ts.tv_sec);
    k.k1 = reinterpret_cast<uintptr_t>(&k) * 0xC2B2AE3D27D4EB4Full ^ static_cast<uint64_t>(clock());
  }
  if (k.k0 == 0 && k.k1 == 0) k.k0 = 1;
  return k;
}

}  // namespace petrel
