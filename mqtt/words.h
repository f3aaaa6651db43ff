// mqtt/words.h — eight bytes of a string at a time: the topic name and
// UTF-8 checks run these for every PUBLISH.
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

}  // namespace petrel::mqtt::words
