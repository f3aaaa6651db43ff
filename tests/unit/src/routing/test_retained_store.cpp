// RetainedStore: the last retained message per topic. Checks set/replace,
// an empty payload clearing the topic, size(), and forEachMatch with exact
// filters, `+`, `#` ("a/#" also matches "a"), the literal-prefix range scan
// (topics sharing a string prefix but not a level: "ab" vs "a/b"), and `$`
// topics against wildcard filters, all compared with mqtt::topicMatches;
// ends with a randomized differential check (fixed seed).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mqtt/topic.h"
#include "src/routing/retained_store.h"

namespace petrel {
namespace {

MessagePtr msg(std::string topic, std::string payload) {
  auto m = std::make_shared<Message>();
  m->topic = std::move(topic);
  m->payload = std::move(payload);
  m->retain = true;
  return m;
}

// The topics matching `filter`, sorted; fails on a topic reported twice.
std::vector<std::string> topics(const RetainedStore& r, std::string_view filter) {
  std::vector<std::string> out;
  r.forEachMatch(filter, [&](const MessagePtr& m) { out.push_back(m->topic); });
  std::sort(out.begin(), out.end());
  EXPECT_EQ(std::adjacent_find(out.begin(), out.end()), out.end()) << filter;
  return out;
}

using Topics = std::vector<std::string>;

TEST(RetainedStore, SetReplaceAndClear) {
  RetainedStore r;
  EXPECT_EQ(r.size(), 0u);
  r.set(msg("a/b", "1"));
  r.set(msg("a/c", "2"));
  EXPECT_EQ(r.size(), 2u);

  r.set(msg("a/b", "3"));  // replaces
  EXPECT_EQ(r.size(), 2u);
  std::vector<std::string> payloads;
  r.forEachMatch("a/b", [&](const MessagePtr& m) { payloads.push_back(m->payload); });
  EXPECT_EQ(payloads, (std::vector<std::string>{"3"}));

  r.set(msg("a/b", ""));  // an empty payload clears
  EXPECT_EQ(r.size(), 1u);
  EXPECT_TRUE(topics(r, "a/b").empty());
  r.set(msg("a/b", ""));  // clearing an absent topic is harmless
  r.set(msg("zzz", ""));
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(topics(r, "#"), (Topics{"a/c"}));

  r.set(msg("a/b", "4"));  // and can be set again
  EXPECT_EQ(r.size(), 2u);
}

TEST(RetainedStore, FindEveryOneAndCountByPrefix) {
  RetainedStore r;
  for (const char* t : {"$SYS", "$SYS/a", "$SYS/b/c", "$SYS-x", "$SYSX", "a", "$app/x"}) r.set(msg(t, "p"));
  ASSERT_NE(r.find("$SYS/a"), nullptr);
  EXPECT_EQ((*r.find("$SYS/a"))->topic, "$SYS/a");
  EXPECT_EQ(r.find("$SYS/"), nullptr);
  EXPECT_EQ(r.countWithPrefix("$SYS/"), 2u);
  EXPECT_EQ(r.countWithPrefix("$"), 6u);
  EXPECT_EQ(r.countWithPrefix("b"), 0u);
  size_t n = 0;
  r.forEach([&](const MessagePtr&) { ++n; });
  EXPECT_EQ(n, 7u);
}

TEST(RetainedStore, StoresTheMessageItself) {
  RetainedStore r;
  MessagePtr m = msg("x", "p");
  r.set(m);
  MessagePtr got;
  r.forEachMatch("x", [&](const MessagePtr& p) { got = p; });
  EXPECT_EQ(got, m);  // shared, not copied
}

class RetainedStoreMatch : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* t : kTopics) r.set(msg(t, "p"));
  }
  // Every filter result is also what topicMatches says over all topics.
  Topics expected(std::string_view filter) const {
    Topics out;
    for (const char* t : kTopics)
      if (mqtt::topicMatches(filter, t)) out.push_back(t);
    std::sort(out.begin(), out.end());
    return out;
  }
  static constexpr const char* kTopics[] = {
      "a",     "a/b",  "a/b/c", "a/c", "ab",   "ab/c",      "a-b", "a.b", "a/",
      "a//b",  "/a",   "/",     "b",   "b/a",  "$SYS",      "$SYS/x", "$SYS/x/y",
      "$other", "x/$y", "a0",   "a/b0",
  };
  RetainedStore r;
};

TEST_F(RetainedStoreMatch, Exact) {
  EXPECT_EQ(topics(r, "a"), (Topics{"a"}));
  EXPECT_EQ(topics(r, "a/b"), (Topics{"a/b"}));
  EXPECT_EQ(topics(r, "ab"), (Topics{"ab"}));
  EXPECT_EQ(topics(r, "a/"), (Topics{"a/"}));
  EXPECT_EQ(topics(r, "/"), (Topics{"/"}));
  EXPECT_EQ(topics(r, "$SYS/x"), (Topics{"$SYS/x"}));
  EXPECT_TRUE(topics(r, "a/b/c/d").empty());
  EXPECT_TRUE(topics(r, "c").empty());
}

TEST_F(RetainedStoreMatch, Plus) {
  EXPECT_EQ(topics(r, "a/+"), (Topics{"a/", "a/b", "a/b0", "a/c"}));
  EXPECT_EQ(topics(r, "+"), (Topics{"a", "a-b", "a.b", "a0", "ab", "b"}));
  EXPECT_EQ(topics(r, "+/c"), (Topics{"a/c", "ab/c"}));
  EXPECT_EQ(topics(r, "a/+/c"), (Topics{"a/b/c"}));
  EXPECT_EQ(topics(r, "a/+/b"), (Topics{"a//b"}));
  EXPECT_EQ(topics(r, "+/a"), (Topics{"/a", "b/a"}));
  for (const char* f : {"a/+", "+", "+/c", "a/+/c", "a/+/b", "+/a", "+/+", "+/+/+", "$SYS/+",
                        "x/+", "+/$y"})
    EXPECT_EQ(topics(r, f), expected(f)) << f;
}

TEST_F(RetainedStoreMatch, Hash) {
  // "a/#" matches "a" itself, and not "ab", "a-b", "a0" (same string prefix,
  // other level).
  EXPECT_EQ(topics(r, "a/#"), (Topics{"a", "a/", "a//b", "a/b", "a/b/c", "a/b0", "a/c"}));
  EXPECT_EQ(topics(r, "ab/#"), (Topics{"ab", "ab/c"}));
  EXPECT_EQ(topics(r, "a/b/#"), (Topics{"a/b", "a/b/c"}));
  EXPECT_EQ(topics(r, "/#"), (Topics{"/", "/a"}));
  for (const char* f : {"a/#", "ab/#", "a/b/#", "/#", "#", "+/#", "a/+/#", "$SYS/#", "x/#"})
    EXPECT_EQ(topics(r, f), expected(f)) << f;
}

TEST_F(RetainedStoreMatch, PrefixRangeStopsAtLevels) {
  // Topics sorting between "a" and "a/..." ("a-b", "a.b" sort before "a/"),
  // and those after it ("a0", "ab") must not leak into "a/..." filters.
  EXPECT_EQ(topics(r, "a/b"), (Topics{"a/b"}));
  EXPECT_EQ(topics(r, "a/b/+"), (Topics{"a/b/c"}));
  EXPECT_EQ(topics(r, "a/b0/#"), (Topics{"a/b0"}));
  for (const char* f : {"a", "a/b", "a/b/+", "a/b0/#", "a-b", "a.b/#", "a0/+", "a//+"})
    EXPECT_EQ(topics(r, f), expected(f)) << f;
}

TEST_F(RetainedStoreMatch, DollarTopicsAndWildcards) {
  // [MQTT-4.7.2-1]: a filter starting with a wildcard skips `$` topics.
  for (const std::string& t : topics(r, "#")) EXPECT_NE(t[0], '$') << t;
  EXPECT_EQ(topics(r, "#").size(), std::size(kTopics) - 4);
  for (const std::string& t : topics(r, "+")) EXPECT_NE(t[0], '$') << t;
  for (const std::string& t : topics(r, "+/#")) EXPECT_NE(t[0], '$') << t;
  EXPECT_EQ(topics(r, "$SYS/#"), (Topics{"$SYS", "$SYS/x", "$SYS/x/y"}));
  EXPECT_EQ(topics(r, "$SYS/+"), (Topics{"$SYS/x"}));
  EXPECT_EQ(topics(r, "+/$y"), (Topics{"x/$y"}));  // `$` later is ordinary
  EXPECT_EQ(topics(r, "x/+"), (Topics{"x/$y"}));
  for (const char* f : {"#", "+", "+/x", "+/#", "$SYS/#", "$SYS/+", "$other", "$SYS/x/#"})
    EXPECT_EQ(topics(r, f), expected(f)) << f;
}

TEST(RetainedStore, DifferentialAgainstTopicMatches) {
  std::mt19937 rng(7);
  static const char* const kTopicLevels[] = {"a", "b", "", "$x", "ab", "a0", "a-"};
  static const char* const kFilterLevels[] = {"a", "b", "", "$x", "ab", "+", "+"};
  auto join = [&](const char* const* levels, size_t nlevels, size_t maxn, bool hash) {
    const size_t n = 1 + rng() % maxn;
    std::string s;
    for (size_t i = 0; i < n; ++i) {
      if (i) s += '/';
      if (hash && i + 1 == n && rng() % 4 == 0) s += '#';
      else s += levels[rng() % nlevels];
    }
    return s;
  };

  RetainedStore r;
  std::set<std::string> stored;
  for (int i = 0; i < 800; ++i) {
    std::string t = join(kTopicLevels, std::size(kTopicLevels), 4, false);
    if (t.empty()) continue;
    if (rng() % 6 == 0) {
      r.set(msg(t, ""));
      stored.erase(t);
    } else {
      r.set(msg(t, "p"));
      stored.insert(t);
    }
  }
  ASSERT_EQ(r.size(), stored.size());
  ASSERT_GT(stored.size(), 200u);

  int checked = 0;
  size_t matched = 0, dollar_matched = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string f = join(kFilterLevels, std::size(kFilterLevels), 4, true);
    if (!mqtt::validTopicFilter(f)) continue;
    Topics want;
    for (const std::string& t : stored)
      if (mqtt::topicMatches(f, t)) want.push_back(t);
    ASSERT_EQ(topics(r, f), want) << "filter '" << f << "'";
    matched += want.size();
    for (const std::string& t : want) dollar_matched += t[0] == '$';
    ++checked;
  }
  EXPECT_GT(checked, 1500);
  EXPECT_GT(matched, 5000u);
  EXPECT_GT(dollar_matched, 100u);
}

}  // namespace
}  // namespace petrel
