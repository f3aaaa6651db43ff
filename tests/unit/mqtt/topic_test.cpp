// Unit tests for mqtt/topic: topic name and topic filter validation, matching
// with the examples of §4.7, and shared subscription filters (§4.8.2).
#include "mqtt/topic.h"

#include "mqtt/codec_util.h"
#include "mqtt/words.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace petrel::mqtt {
namespace {

// ---------------------------------------------------------------------------
// Topic names

TEST(TopicName, Valid) {
  for (std::string_view t : {"a", "sport/tennis/player1", "/", "//", "/finance", "finance/",
                             "a//b", "$SYS/broker/load", "with space", "caf\xC3\xA9",
                             "$share/g/t", "ACCOUNTS", "a/b/c/d/e/f/g/h"}) {
    EXPECT_TRUE(validTopicName(t)) << t;
  }
}

TEST(TopicName, Invalid) {
  for (std::string_view t : {"", "+", "#", "a/+", "a/#", "sport/tennis/+/x", "a+b", "a#",
                             "+/a", "#/a"}) {
    EXPECT_FALSE(validTopicName(t)) << t;
  }
}

TEST(TopicName, LengthLimit) {
  EXPECT_TRUE(validTopicName(std::string(65535, 'a')));
  EXPECT_FALSE(validTopicName(std::string(65536, 'a')));
}

TEST(TopicName, LevelLimit) {
  EXPECT_TRUE(validTopicName("a", 1));
  EXPECT_FALSE(validTopicName("a/b", 1));
  EXPECT_TRUE(validTopicName("a/b/c", 3));
  EXPECT_FALSE(validTopicName("a/b/c/d", 3));
  // Empty levels count: "/" has two levels, "a//b" three.
  EXPECT_FALSE(validTopicName("/", 1));
  EXPECT_TRUE(validTopicName("/", 2));
  EXPECT_FALSE(validTopicName("a//b", 2));
  EXPECT_TRUE(validTopicName("a//b", 3));
  // 0 means no limit.
  std::string deep = "x";
  for (int i = 0; i < 999; ++i) deep += "/x";
  EXPECT_TRUE(validTopicName(deep, 0));
  EXPECT_TRUE(validTopicName(deep, 1000));
  EXPECT_FALSE(validTopicName(deep, 999));
}

// ---------------------------------------------------------------------------
// Topic filters

TEST(TopicFilter, Valid) {
  for (std::string_view f :
       {"#", "+", "+/+", "/+", "+/", "sport/#", "sport/tennis/#", "sport/tennis/+",
        "sport/+/player1", "+/tennis/#", "sport/tennis/player1", "/", "a//b", "a/+/+/#",
        "$SYS/#", "$SYS/monitor/+", "+/monitor/Clients", "/#", "//#", "+/+/+"}) {
    EXPECT_TRUE(validTopicFilter(f)) << f;
  }
}

TEST(TopicFilter, Invalid) {
  for (std::string_view f :
       {"", "sport/tennis#", "sport/tennis/#/ranking", "sport+", "+sport", "sport/+tennis",
        "sport/ten+nis", "##", "#/", "#/a", "a/#/", "a/#/#", "++", "+#", "#+", "a/b#", "a/#b",
        "a/+b/c", "a/b+/c"}) {
    EXPECT_FALSE(validTopicFilter(f)) << f;
  }
}

TEST(TopicFilter, LengthLimit) {
  EXPECT_TRUE(validTopicFilter(std::string(65535, 'a')));
  EXPECT_FALSE(validTopicFilter(std::string(65536, 'a')));
}

TEST(TopicFilter, LevelLimit) {
  EXPECT_TRUE(validTopicFilter("#", 1));
  EXPECT_TRUE(validTopicFilter("a/+/#", 3));
  EXPECT_FALSE(validTopicFilter("a/+/#", 2));
  EXPECT_TRUE(validTopicFilter("+/+", 2));
  EXPECT_FALSE(validTopicFilter("+/+/+", 2));
  EXPECT_FALSE(validTopicFilter("a//b", 2));
  EXPECT_TRUE(validTopicFilter("a//b/c/d", 0));
}

// ---------------------------------------------------------------------------
// Matching (§4.7)

struct MatchCase {
  const char* filter;
  const char* topic;
  bool matches;
};

void checkAll(const std::vector<MatchCase>& cases) {
  for (const auto& c : cases) {
    EXPECT_EQ(topicMatches(c.filter, c.topic), c.matches)
        << "filter '" << c.filter << "' topic '" << c.topic << "'";
  }
}

TEST(TopicMatch, MultiLevelWildcardSpecExamples) {
  checkAll({
      {"sport/tennis/player1/#", "sport/tennis/player1", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
      {"sport/tennis/player1/#", "sport/tennis/player2", false},
      {"sport/tennis/player1/#", "sport/tennis", false},
      {"sport/tennis/player1/#", "sport/tennis/player10", false},
      {"sport/#", "sport", true},
      {"sport/#", "sport/", true},
      {"sport/#", "sport/tennis/player1", true},
      {"sport/#", "sports", false},
      {"sport/#", "other/sport", false},
  });
}

TEST(TopicMatch, HashAloneMatchesEverythingExceptDollarTopics) {
  checkAll({
      {"#", "a", true},
      {"#", "/", true},
      {"#", "/finance", true},
      {"#", "a/b/c/d", true},
      {"#", "a//b", true},
      {"#", "sport/tennis/player1", true},
      {"#", "$SYS", false},
      {"#", "$SYS/broker", false},
      {"#", "$share/g/t", false},
      {"#", "$", false},
      {"#", "a/$SYS", true},  // only a leading '$' is special
  });
}

TEST(TopicMatch, SingleLevelWildcardSpecExamples) {
  checkAll({
      {"sport/tennis/+", "sport/tennis/player1", true},
      {"sport/tennis/+", "sport/tennis/player2", true},
      {"sport/tennis/+", "sport/tennis/player1/ranking", false},
      {"sport/tennis/+", "sport/tennis", false},
      {"sport/tennis/+", "sport/tennis/", true},
      {"sport/+", "sport", false},
      {"sport/+", "sport/", true},
      {"sport/+/player1", "sport/tennis/player1", true},
      {"sport/+/player1", "sport/tennis/player2", false},
      {"+", "finance", true},
      {"+", "/finance", false},
      {"+/+", "/finance", true},
      {"/+", "/finance", true},
      {"/+", "finance", false},
      {"+/+", "a", false},
      {"+/+", "a/b/c", false},
      {"+/tennis/#", "sport/tennis/player1/ranking", true},
      {"+/tennis/#", "sport/tennis", true},
      {"+/tennis/#", "sport/golf", false},
      {"a/+/#", "a/b", true},
      {"a/+/#", "a", false},
  });
}

TEST(TopicMatch, DollarTopics) {
  checkAll({
      {"$SYS/#", "$SYS/x", true},
      {"$SYS/#", "$SYS", true},
      {"$SYS/+", "$SYS/x", true},
      {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
      {"$SYS/monitor/Clients", "$SYS/monitor/Clients", true},
      {"#", "$SYS/monitor/Clients", false},
      {"+/monitor/Clients", "$SYS/monitor/Clients", false},
      {"+", "$SYS", false},
      {"+/#", "$SYS/x", false},
      {"+/monitor/Clients", "a/monitor/Clients", true},
      {"$SYS/#", "SYS/x", false},
  });
}

TEST(TopicMatch, ExactNamesAndCase) {
  checkAll({
      {"a/b", "a/b", true},
      {"a/b", "a/b/c", false},
      {"a/b/c", "a/b", false},
      {"a/b", "a/bc", false},
      {"a/bc", "a/b", false},
      {"ACCOUNTS", "Accounts", false},
      {"Accounts", "Accounts", true},
      {"/finance", "/finance", true},
      {"/finance", "finance", false},
      {"finance", "/finance", false},
      {"finance/", "finance", false},
      {"caf\xC3\xA9", "caf\xC3\xA9", true},
      {"a b", "a b", true},
  });
}

TEST(TopicMatch, EmptyLevels) {
  checkAll({
      {"a//b", "a//b", true},
      {"a//b", "a/b", false},
      {"a/b", "a//b", false},
      {"a/+/b", "a//b", true},
      {"a/+/b", "a/x/b", true},
      {"a/#", "a//b", true},
      {"+/+/+", "a//b", true},
      {"+/+", "a//b", false},
      {"//", "//", true},
      {"+/+", "/", true},
      {"/+", "/", true},
      {"+", "/", false},
      {"/#", "/", true},
      {"a/+", "a/", true},
      {"a/#", "a/", true},
      {"a/", "a/", true},
      {"a/", "a", false},
      {"a//#", "a/", true},  // "#" also matches its parent level, here the empty one
      {"a//#", "a", false},
      {"a//#", "a//", true},
  });
}

// ---------------------------------------------------------------------------
// Shared subscriptions (§4.8.2)

TEST(SharedFilter, PlainFilterIsNotShared) {
  SharedFilter s;
  s.shared = true;
  s.group = "stale";
  s.filter = "stale";
  ASSERT_TRUE(parseSharedFilter("sport/tennis/+", s));
  EXPECT_FALSE(s.shared);
  EXPECT_TRUE(s.group.empty());
  for (std::string_view f : {"$SYS/#", "#", "$share", "$SHARE/g/t", "$sharex/g/t", "share/g/t",
                             "/$share/g/t"}) {
    SharedFilter t;
    EXPECT_TRUE(parseSharedFilter(f, t)) << f;
    EXPECT_FALSE(t.shared) << f;
  }
}

TEST(SharedFilter, SplitsGroupAndFilter) {
  struct Case {
    const char* in;
    const char* group;
    const char* filter;
  };
  for (const Case& c : {Case{"$share/g/t", "g", "t"},
                        Case{"$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+"},
                        Case{"$share/group/#", "group", "#"},
                        Case{"$share/g/+/x/#", "g", "+/x/#"},
                        Case{"$share/g//", "g", "/"},
                        Case{"$share/g/$SYS/#", "g", "$SYS/#"},
                        Case{"$share/caf\xC3\xA9/t", "caf\xC3\xA9", "t"}}) {
    SharedFilter s;
    ASSERT_TRUE(parseSharedFilter(c.in, s)) << c.in;
    EXPECT_TRUE(s.shared) << c.in;
    EXPECT_EQ(s.group, c.group) << c.in;
    EXPECT_EQ(s.filter, c.filter) << c.in;
  }
}

TEST(SharedFilter, ViewsPointIntoTheInput) {
  const std::string in = "$share/grp/a/b";
  SharedFilter s;
  ASSERT_TRUE(parseSharedFilter(in, s));
  EXPECT_EQ(s.group.data(), in.data() + 7);
  EXPECT_EQ(s.filter.data(), in.data() + 11);
}

TEST(SharedFilter, Malformed) {
  for (std::string_view f : {
           "$share/",          // nothing after the prefix
           "$share//t",        // empty share name
           "$share/g",         // no filter
           "$share/g/",        // empty filter
           "$share/+/t",       // wildcard share name
           "$share/#/t",
           "$share/g+/t",
           "$share/g#/t",
           "$share/g/a#",      // invalid filter
           "$share/g/a/#/b",
           "$share/g/+a",
       }) {
    SharedFilter s;
    EXPECT_FALSE(parseSharedFilter(f, s)) << f;
  }
}

}  // namespace
}  // namespace petrel::mqtt

// The eight-bytes-at-a-time checks against a byte-by-byte reference, on
// strings of every length around the 8-byte steps, with the characters
// that matter anywhere in them: wildcards, separators, NUL, and bytes of
// multi-byte, overlong, surrogate and invalid UTF-8 sequences.
namespace petrel::mqtt {
namespace {

bool referenceTopicName(std::string_view t, size_t max_levels) {
  if (t.empty() || t.size() > 65535) return false;
  size_t levels = 1;
  for (char c : t) {
    if (c == '+' || c == '#') return false;
    if (c == '/') ++levels;
  }
  return max_levels == 0 || levels <= max_levels;
}

bool referenceUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c == 0) return false;
    if (c < 0x80) n = 0, cp = c;
    else if (c >= 0xC0 && c < 0xE0) n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c < 0xF0) n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c < 0xF8) n = 3, cp = c & 0x07;
    else return false;
    if (i + n >= s.size() && n > 0) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if (d < 0x80 || d >= 0xC0) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

TEST(TopicValidation, WordAtATimeMatchesByteByByte) {
  const char alphabet[] = {'a', 'Z', '/', '/', '+', '#', '\0', '$', ' ', '.', '\x7F', '\x80', '\xBF', '\xC0',
                           '\xC3', '\xA9', '\xE2', '\x82', '\xAC', '\xED', '\xA0', '\xF0', '\x9F', '\x98',
                           '\xF4', '\x90', '\xFF'};
  std::mt19937 rng(20261201);
  size_t topics_valid = 0, utf8_valid = 0;
  for (int round = 0; round < 200000; ++round) {
    const size_t len = rng() % 41;
    std::string s(len, 'a');
    // Mostly plain text with a few special bytes, so that valid strings
    // are common too.
    for (auto& c : s)
      if (rng() % 6 == 0) c = alphabet[rng() % sizeof alphabet];
    const size_t max_levels = rng() % 4 == 0 ? rng() % 6 : rng() % 3 == 0 ? rng() % 50 : 0;
    ASSERT_EQ(validTopicName(s, max_levels), referenceTopicName(s, max_levels))
        << "topic of " << len << " bytes, max levels " << max_levels;
    ASSERT_EQ(validUtf8(s), referenceUtf8(s)) << "string of " << len << " bytes";
    // The same bytes inside a larger buffer, between bytes that one of the
    // checks refuses ('#' in a topic name, 0xFF in UTF-8): only the view's
    // own bytes may decide.
    for (const char pad : {'#', '\xFF'}) {
      const std::string framed = std::string(9, pad) + s + std::string(9, pad);
      const std::string_view inner = std::string_view(framed).substr(9, len);
      ASSERT_EQ(validTopicName(inner, max_levels), referenceTopicName(s, max_levels))
          << "topic of " << len << " bytes between bytes " << int(static_cast<unsigned char>(pad));
      ASSERT_EQ(validUtf8(inner), referenceUtf8(s))
          << "string of " << len << " bytes between bytes " << int(static_cast<unsigned char>(pad));
    }
    topics_valid += referenceTopicName(s, max_levels);
    utf8_valid += referenceUtf8(s);
  }
  EXPECT_GT(topics_valid, 10000u);
  EXPECT_GT(utf8_valid, 10000u);
}

// sameBytes (the topic tree's name comparison) against memcmp: every length
// from 0 to 40, equal strings, and each one with a single byte changed at
// every position (the first, middle and last bytes, and the overlap of two
// words, are where a word comparison can miss one). Each string is copied
// into a heap block of its exact size, so that the sanitizer build catches
// a read past either end.
TEST(TopicValidation, SameBytesAgreesWithMemcmp) {
  std::mt19937 rng(20261204);
  size_t compared = 0;
  for (size_t len = 0; len <= 40; ++len) {
    for (int round = 0; round < 20; ++round) {
      std::unique_ptr<char[]> ea(new char[len]), eb(new char[len]);  // exact size
      for (size_t i = 0; i < len; ++i) ea[i] = static_cast<char>(rng() % 3 == 0 ? rng() : 'a' + rng() % 2);
      std::memcpy(eb.get(), ea.get(), len);
      ASSERT_TRUE(words::sameBytes(ea.get(), eb.get(), len)) << len << " equal bytes";
      for (size_t i = 0; i < len; ++i) {
        const char was = eb[i];
        eb[i] = static_cast<char>(was ^ (1 << (rng() % 8)));
        ASSERT_FALSE(words::sameBytes(ea.get(), eb.get(), len)) << len << " bytes, byte " << i << " changed";
        ASSERT_FALSE(words::sameBytes(eb.get(), ea.get(), len)) << len << " bytes, byte " << i << " changed";
        eb[i] = was;
        ++compared;
      }
      // Random pairs over a two-letter alphabet (equal at the shortest lengths).
      for (size_t i = 0; i < len; ++i) {
        ea[i] = static_cast<char>('a' + rng() % 2);
        eb[i] = static_cast<char>('a' + rng() % 2);
      }
      ASSERT_EQ(words::sameBytes(ea.get(), eb.get(), len), std::memcmp(ea.get(), eb.get(), len) == 0) << len;
    }
  }
  EXPECT_GT(compared, 15000u);
}

// The level limit at its edge: n bytes hold at most n + 1 levels, and the
// check counts levels only where that could pass the limit. A topic of
// slashes only has the most levels its length allows.
TEST(TopicValidation, LevelLimitAtTheEdge) {
  for (size_t k = 1; k <= 70; ++k) {
    const std::string slashes(k, '/');  // k + 1 levels
    EXPECT_TRUE(validTopicName(slashes, k + 1)) << k << " slashes";
    EXPECT_FALSE(validTopicName(slashes, k)) << k << " slashes";
    std::string levels = "a";
    for (size_t i = 1; i < k; ++i) levels += "/a";  // k levels, 2k - 1 bytes
    EXPECT_TRUE(validTopicName(levels, k)) << k << " levels";
    EXPECT_FALSE(validTopicName(levels, k - 1) && k > 1) << k << " levels";
  }
}

}  // namespace petrel::mqtt
