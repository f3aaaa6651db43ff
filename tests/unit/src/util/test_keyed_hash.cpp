#include "src/util/keyed_hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace petrel {
namespace {

// The key of the SipHash paper's examples: bytes 00 01 … 0f.
SipKey paperKey() {
  SipKey k;
  k.k0 = 0x0706050403020100ull;
  k.k1 = 0x0f0e0d0c0b0a0908ull;
  return k;
}

std::string firstBytes(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i));
  return s;
}

struct Vector {
  size_t length;  // of the message 00 01 … (length - 1)
  uint64_t sip13;
  uint64_t sip24;
};

// From OpenSSL's SIPHASH (`openssl mac -macopt hexkey:000102…0f -macopt
// size:8 [-macopt c-rounds:1 -macopt d-rounds:3] SIPHASH`), an
// implementation of its own; the SipHash-2-4 values at 0 to 4, 8 and 15
// bytes are also those of the reference implementation's table. Every
// length from 0 to 16: each count of bytes left after the whole words.
constexpr Vector kVectors[] = {
    {0, 0xabac0158050fc4dcull, 0x726fdb47dd0e0e31ull},
    {1, 0xc9f49bf37d57ca93ull, 0x74f839c593dc67fdull},
    {2, 0x82cb9b024dc7d44dull, 0x0d6c8009d9a94f5aull},
    {3, 0x8bf80ab8e7ddf7fbull, 0x85676696d7fb7e2dull},
    {4, 0xcf75576088d38328ull, 0xcf2794e0277187b7ull},
    {5, 0xdef9d52f49533b67ull, 0x18765564cd99a68dull},
    {6, 0xc50d2b50c59f22a7ull, 0xcbc9466e58fee3ceull},
    {7, 0xd3927d989bb11140ull, 0xab0200f58b01d137ull},
    {8, 0x369095118d299a8eull, 0x93f5f5799a932462ull},
    {9, 0x25a48eb36c063de4ull, 0x9e0082df0ba9e4b0ull},
    {10, 0x79de85ee92ff097full, 0x7a5dbbc594ddb9f3ull},
    {11, 0x70c118c1f94dc352ull, 0xf4b32f46226bada7ull},
    {12, 0x78a384b157b4d9a2ull, 0x751e8fbc860ee5fbull},
    {13, 0x306f760c1229ffa7ull, 0x14ea5627c0843d90ull},
    {14, 0x605aa111c0f95d34ull, 0xf723ca908e7af2eeull},
    {15, 0xd320d86d2a519956ull, 0xa129ca6149be45e5ull},
    {16, 0xcc4fdd1a7d908b66ull, 0x3f2acc7f57c29bdbull},
    {31, 0x2370dd1f8c21d1bcull, 0x32d892fad841c342ull},
    {64, 0xf17997ec4b4a6065ull, 0xacd2c40b8502cad8ull},
};

TEST(KeyedHash, AgreesWithOpenSslsSipHash) {
  for (const Vector& v : kVectors) {
    // Each message in a heap block of exactly its size: the sanitizer
    // build sees a read past its end.
    const std::string m = firstBytes(v.length);
    std::vector<char> exact(m.begin(), m.end());
    EXPECT_EQ((sipHash<1, 3>(paperKey(), exact.data(), exact.size())), v.sip13) << v.length << " bytes";
    EXPECT_EQ((sipHash<2, 4>(paperKey(), exact.data(), exact.size())), v.sip24) << v.length << " bytes";
  }
}

TEST(KeyedHash, TheKeyIsDrawnOnceAndEachDrawIsNew) {
  const SipKey& a = processSipKey();
  EXPECT_EQ(&a, &processSipKey());
  EXPECT_FALSE(a.k0 == 0 && a.k1 == 0);
  // What a new process does on its first hash: a key unlike this one's,
  // and unlike any other draw's.
  std::set<std::pair<uint64_t, uint64_t>> seen{{a.k0, a.k1}};
  for (int i = 0; i < 100; ++i) {
    const SipKey k = drawSipKey();
    EXPECT_TRUE(seen.emplace(k.k0, k.k1).second) << "a key drawn twice";
  }
}

// Levels that std::hash puts in one bucket of a table of `buckets` (found
// by trying names in turn, as anyone can: its seed is fixed) are spread
// over the buckets by the keyed hash.
TEST(KeyedHash, SpreadsNamesThatCollideUnderStdHash) {
  constexpr size_t kBuckets = 1031;  // a table size libstdc++ picks
  std::vector<std::string> same;
  for (uint64_t i = 0; same.size() < 64; ++i) {
    std::string s = "device-" + std::to_string(i);
    if (std::hash<std::string_view>{}(s) % kBuckets == 0) same.push_back(std::move(s));
  }
  std::set<size_t> buckets;
  for (const std::string& s : same) buckets.insert(KeyedHash{}(s) % kBuckets);
  // 64 names over 1,031 buckets at random: about 62 distinct buckets; 40
  // or fewer has a chance far below one in a billion.
  EXPECT_GT(buckets.size(), 40u);

  // And in a table as the broker uses it: its longest chain is short.
  std::unordered_map<std::string, int, KeyedHash, std::equal_to<>> table;
  table.reserve(kBuckets);
  for (const std::string& s : same) table.emplace(s, 0);
  size_t longest = 0;
  for (size_t b = 0; b < table.bucket_count(); ++b) longest = std::max(longest, table.bucket_size(b));
  EXPECT_LE(longest, 4u);
  // Looked up by string_view, without a std::string.
  EXPECT_NE(table.find(std::string_view(same[7])), table.end());
}

}  // namespace
}  // namespace petrel
