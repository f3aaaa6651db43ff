// src/util/keyed_hash.h — the hash of the tables whose keys a client
// chooses: topic levels, client ids, share group names, published topics.
//
// std::hash hashes a string with a seed that is the same in every process,
// so the strings that land in one bucket of a table can be worked out
// ahead of time: a client that subscribes thousands of such levels under
// one node (or connects with such client ids) turns each lookup there into
// a walk of one long chain. SipHash with a key drawn at start from the
// kernel's random source leaves nothing to work out ahead: which strings
// share a bucket differs from one process to the next and cannot be seen
// from outside. SipHash-1-3 (one round per word, three to finish) is the
// variant Rust's and Python's own hash tables use for strings.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace petrel {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// SipHash-C-D of the `n` bytes at `data` under `key`.
template <int C, int D>
uint64_t sipHash(const SipKey& key, const void* data, size_t n) {
  uint64_t v0 = key.k0 ^ 0x736f6d6570736575ull;
  uint64_t v1 = key.k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = key.k0 ^ 0x6c7967656e657261ull;
  uint64_t v3 = key.k1 ^ 0x7465646279746573ull;
  auto round = [&] {
    v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
    v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
  };
  auto word = [&](uint64_t m) {
    v3 ^= m;
    for (int i = 0; i < C; ++i) round();
    v0 ^= m;
  };
  // Words are read little-endian, as the algorithm defines them.
  auto le = [](uint64_t w) {
    if constexpr (std::endian::native == std::endian::little) return w;
    else return __builtin_bswap64(w);
  };
  const auto* p = static_cast<const unsigned char*>(data);
  const size_t whole = n & ~size_t{7};
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m;
    std::memcpy(&m, p + i, 8);
    word(le(m));
  }
  // The last word: the bytes left over, and the length in its top byte.
  // The 1 to 7 bytes are read as two loads that overlap (their common
  // bytes are the same), not one at a time, and none past the end.
  const unsigned char* t = p + whole;
  const size_t r = n & 7;
  uint64_t last = 0;
  if (r >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, t, 4);
    std::memcpy(&hi, t + r - 4, 4);
    if constexpr (std::endian::native != std::endian::little) {
      lo = __builtin_bswap32(lo);
      hi = __builtin_bswap32(hi);
    }
    last = lo | static_cast<uint64_t>(hi) << (8 * (r - 4));
  } else if (r > 0) {
    last = static_cast<uint64_t>(t[0]) | static_cast<uint64_t>(t[r / 2]) << (8 * (r / 2)) |
           static_cast<uint64_t>(t[r - 1]) << (8 * (r - 1));
  }
  word(last | static_cast<uint64_t>(n) << 56);
  v2 ^= 0xff;
  for (int i = 0; i < D; ++i) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

SipKey drawSipKey();

// This process's key: drawn once, on first use, from getrandom(2) (the
// kernel's pool; /dev/urandom if that call is missing). Never zero.
inline const SipKey& processSipKey() {
  static const SipKey key = drawSipKey();
  return key;
}

// For std::unordered_map and unordered_set of std::string or
// std::string_view, looked up with either (`std::equal_to<>` as the
// table's equality).
//
// Not `noexcept`, on purpose: libstdc++ stores each entry's hash code in
// the table only when hashing may throw or is not marked fast. With the
// codes stored, a lookup hashes its key once and compares codes before
// strings, and growing the table hashes nothing again; without them it
// hashes the entries it passes to learn whether they are still in the
// bucket.
struct KeyedHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return static_cast<size_t>(sipHash<1, 3>(processSipKey(), s.data(), s.size()));
  }
};

}  // namespace petrel
