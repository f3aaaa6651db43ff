// mqtt/words.h — eight bytes of a string at a time: the topic name and
// UTF-8 checks, and the topic tree's walk, run these for every PUBLISH.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace petrel::mqtt::words {

constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;

// The high bit of each byte of `v` equal to the byte `b`, exactly (no
// carries between bytes), so that the bits can be counted.
inline uint64_t bytesEqual(uint64_t v, unsigned char b) {
  const uint64_t t = v ^ (0x0101010101010101ull * b);
  return ~(((t & kLow7) + kLow7) | t | kLow7);
}

// Every byte of `v` is plain ASCII and not NUL (0x01..0x7F): no high bit
// set, and no zero byte.
inline bool plainAscii(uint64_t v) { return (v & ~kLow7) == 0 && bytesEqual(v, 0) == 0; }

// How many bytes bytesEqual flagged: each flag moved to its byte's low bit,
// and the eight bytes summed into the top one by a multiplication. The
// baseline x86-64 target has no popcount instruction: __builtin_popcountll
// is a library call there.
inline size_t flaggedBytes(uint64_t m) {
  return static_cast<size_t>(((m >> 7) * 0x0101010101010101ull) >> 56);
}

inline uint64_t load(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The last `n` (1 to 7) of the eight bytes at `p`, as the first bytes in
// memory order of a word whose other bytes are zero, as memcpy of just
// those bytes into a zeroed word would put them; zero bytes match none of
// the bytes looked for.
inline uint64_t lastBytes(const char* p, size_t n) {
  const uint64_t v = load(p);
  const unsigned drop = 8 * static_cast<unsigned>(8 - n);
  if constexpr (std::endian::native == std::endian::little) return v >> drop;
  else return v << drop;
}

inline uint32_t load4(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Whether the `n` bytes at `a` and at `b` are the same: memcmp's answer for
// the short strings of a topic level, without a call. Reads no byte outside
// either range: words that overlap where `n` is not a multiple of their size.
inline bool sameBytes(const char* a, const char* b, size_t n) {
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8)
      if (load(a + i) != load(b + i)) return false;
    return load(a + n - 8) == load(b + n - 8);
  }
  if (n >= 4) return load4(a) == load4(b) && load4(a + n - 4) == load4(b + n - 4);
  if (n == 0) return true;
  return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1];
}

}  // namespace petrel::mqtt::words
