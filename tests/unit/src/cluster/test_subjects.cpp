// MQTT topics and filters as NATS subjects: reversible for every topic, and
// a filter's subjects match exactly the topics the filter does (but for the
// '$' rule, which the receiving node applies itself).
#include <gtest/gtest.h>

#include <cctype>
#include <random>
#include <set>

#include "mqtt/topic.h"
#include "src/cluster/subjects.h"

namespace petrel::cluster {
namespace {

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    const size_t end = s.find('.', pos);
    out.push_back(s.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
    if (end == std::string_view::npos) return out;
    pos = end + 1;
  }
}

// NATS's rules: '*' is one token, '>' (last) one or more.
bool natsMatches(std::string_view pattern, std::string_view subject) {
  const auto p = tokens(pattern), s = tokens(subject);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return s.size() > i;
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

// What NATS accepts in a published subject's token, and more: printable
// ASCII, none of its special characters.
void expectValidSubject(const std::string& subject) {
  for (std::string_view t : tokens(subject)) {
    ASSERT_FALSE(t.empty()) << subject;
    ASSERT_NE(t, "*") << subject;
    ASSERT_NE(t, ">") << subject;
    for (char c : t) {
      const auto u = static_cast<unsigned char>(c);
      ASSERT_TRUE(u > 0x20 && u < 0x7F && c != '*' && c != '>') << subject;
    }
  }
}

void expectRoundTrip(const std::string& topic) {
  const std::string subject = topicSubject("petrel", topic);
  expectValidSubject(subject);
  std::string back;
  ASSERT_TRUE(subjectTopic("petrel", subject, back)) << subject;
  ASSERT_EQ(back, topic) << subject;
  // One token per level, after "petrel.m".
  size_t levels = 1;
  for (char c : topic) levels += c == '/';
  ASSERT_EQ(tokens(subject).size(), levels + 2) << subject;
  // The bucket key: the same tokens, of the characters a NATS key allows.
  const std::string key = topicKey(topic);
  ASSERT_EQ("petrel.m." + key, subject);
  for (char c : key) ASSERT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') << key;
  ASSERT_TRUE(keyTopic(key, back)) << key;
  ASSERT_EQ(back, topic) << key;
}

TEST(ClusterSubjects, Examples) {
  EXPECT_EQ(topicSubject("petrel", "a/b"), "petrel.m.a.b");
  EXPECT_EQ(topicSubject("petrel", "a.b"), "petrel.m.a_2Eb");
  EXPECT_EQ(topicSubject("petrel", "$SYS/x"), "petrel.m._24SYS.x");
  EXPECT_EQ(topicSubject("petrel", "/"), "petrel.m._._");
  EXPECT_EQ(topicSubject("petrel", "a//b"), "petrel.m.a._.b");
  EXPECT_EQ(topicSubject("petrel", "_"), "petrel.m._5F");
  EXPECT_EQ(topicSubject("petrel", "*/>/ "), "petrel.m._2A._3E._20");
  EXPECT_EQ(topicSubject("c1", "\xC3\xA9t\xC3\xA9"), "c1.m._C3_A9t_C3_A9");
}

TEST(ClusterSubjects, BucketKeys) {
  EXPECT_EQ(topicKey("a/b"), "a.b");
  EXPECT_EQ(topicKey("$SYS/x"), "_24SYS.x");
  EXPECT_EQ(topicKey("/"), "_._");
  std::string t = "junk";
  ASSERT_TRUE(keyTopic("a._.b", t));
  EXPECT_EQ(t, "a//b");
  EXPECT_FALSE(keyTopic("a..b", t));
  EXPECT_FALSE(keyTopic("", t));
  EXPECT_FALSE(keyTopic("a.", t));
  EXPECT_FALSE(keyTopic("a/b", t));  // '/' is never in a token
}

TEST(ClusterSubjects, EveryByteAloneAndBetweenOthersRoundTrips) {
  for (int b = 1; b < 256; ++b) {
    const std::string c(1, static_cast<char>(b));
    if (c == "/") continue;  // the level separator
    expectRoundTrip(c);
    expectRoundTrip("a" + c + "b");
    expectRoundTrip(c + "/" + c);
    expectRoundTrip("/" + c + "/");
    expectRoundTrip(c + c + c);
  }
}

TEST(ClusterSubjects, EveryPairOfBytesRoundTrips) {
  for (int a = 1; a < 256; ++a)
    for (int b = 1; b < 256; ++b) {
      std::string t{static_cast<char>(a), static_cast<char>(b)};
      expectRoundTrip(t);
    }
}

// Levels made of what the encoding treats specially, at random.
std::string randomTopic(std::mt19937& rng) {
  static const std::vector<std::string> parts = {"", "a", "Z9", "-", "_", ".", "..", "*", ">", " ", "\t",
                                                 "$", "$SYS", "_2E", "_5F", "_", "\xC3\xA9", "\xF0\x9F\x90\xA6",
                                                 "a.b", "x*y", "0", "\x7F", "%", "~"};
  std::uniform_int_distribution<size_t> nlevels(1, 6), npart(0, 3), pick(0, parts.size() - 1);
  std::string t;
  const size_t n = nlevels(rng);
  for (size_t i = 0; i < n; ++i) {
    if (i) t += '/';
    for (size_t k = npart(rng); k > 0; --k) t += parts[pick(rng)];
  }
  return t;
}

TEST(ClusterSubjects, RandomTopicsRoundTripAndStayDistinct) {
  std::mt19937 rng(7);
  std::set<std::string> topics, subjects;
  for (int i = 0; i < 100000; ++i) {
    const std::string t = randomTopic(rng);
    expectRoundTrip(t);
    if (topics.insert(t).second) {
      EXPECT_TRUE(subjects.insert(topicSubject("petrel", t)).second) << t;
    }
  }
  EXPECT_EQ(topics.size(), subjects.size());
}

TEST(ClusterSubjects, OnlyTheEncodersSpellingDecodes) {
  std::string t;
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.a_2eb", t));   // lower-case hex
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m._41", t));     // 'A' is never escaped
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.a_2", t));     // cut short
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.a__2E", t));   // '_' not escaped
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.a..b", t));    // empty token
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.", t));
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m", t));
  EXPECT_FALSE(subjectTopic("petrel", "other.m.a", t));        // another cluster
  EXPECT_FALSE(subjectTopic("petrel", "petrelx.m.a", t));
  EXPECT_FALSE(subjectTopic("petrel", "petrel.m.a*", t));      // a raw '*'
  ASSERT_TRUE(subjectTopic("petrel", "petrel.m._", t));
  EXPECT_EQ(t, "");
}

TEST(ClusterSubjects, FilterSubjects) {
  using V = std::vector<std::string>;
  EXPECT_EQ(filterSubjects("p", "a/b"), (V{"p.m.a.b"}));
  EXPECT_EQ(filterSubjects("p", "+"), (V{"p.m.*"}));
  EXPECT_EQ(filterSubjects("p", "#"), (V{"p.m.>"}));
  EXPECT_EQ(filterSubjects("p", "a/#"), (V{"p.m.a.>", "p.m.a"}));
  EXPECT_EQ(filterSubjects("p", "+/a.b/#"), (V{"p.m.*.a_2Eb.>", "p.m.*.a_2Eb"}));
  EXPECT_EQ(filterSubjects("p", "/+"), (V{"p.m._.*"}));
  EXPECT_EQ(filterSubjects("p", "$SYS/#"), (V{"p.m._24SYS.>", "p.m._24SYS"}));
}

// For every pair of a filter and a topic: a subject of the filter matches
// the topic's subject if and only if the filter matches the topic, but for
// '$' topics under a leading wildcard, which NATS lets through and the
// receiving node's own match drops.
TEST(ClusterSubjects, FilterSubjectsMatchWhatTheFilterMatches) {
  std::mt19937 rng(11);
  std::vector<std::string> topics;
  for (int i = 0; i < 400; ++i) topics.push_back(randomTopic(rng));
  for (const char* t : {"a", "a/b", "a/b/c", "/", "a/", "$SYS/x", "$x", "a.b/c", "*/>"}) topics.push_back(t);
  std::vector<std::string> filters = {"#", "+", "a/#", "a/+", "+/+", "+/b/#", "/#", "+/", "$SYS/#", "a.b/+",
                                      "*/>", "a/b/c", "a//#", "+/+/+/#", "a"};
  std::uniform_int_distribution<int> coin(0, 3);
  for (int i = 0; i < 200; ++i) {
    // A topic turned into a filter: some levels '+', maybe a final '#'.
    std::string f;
    const std::string t = topics[i];
    if (!mqtt::validTopicName(t)) continue;  // "" (no level at all)
    size_t pos = 0;
    while (true) {
      const size_t end = t.find('/', pos);
      std::string level(t.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
      f += coin(rng) == 0 ? "+" : level;
      if (end == std::string::npos) break;
      f += '/';
      pos = end + 1;
    }
    if (coin(rng) == 0) f += "/#";
    filters.push_back(f);
  }
  size_t matches = 0;
  for (const std::string& f : filters) {
    ASSERT_TRUE(mqtt::validTopicFilter(f)) << f;
    const auto subs = filterSubjects("petrel", f);
    for (const std::string& t : topics) {
      if (!mqtt::validTopicName(t)) continue;
      const std::string subject = topicSubject("petrel", t);
      bool nats = false;
      for (const auto& s : subs) nats = nats || natsMatches(s, subject);
      const bool mqtt = mqtt::topicMatches(f, t);
      const bool dollar_rule = t[0] == '$' && (f[0] == '+' || f[0] == '#');
      if (dollar_rule) {
        EXPECT_FALSE(mqtt) << f << " " << t;
      } else {
        EXPECT_EQ(nats, mqtt) << "filter '" << f << "' topic '" << t << "'";
      }
      matches += mqtt;
    }
  }
  EXPECT_GT(matches, 500u);  // the pairs are not all misses
}

}  // namespace
}  // namespace petrel::cluster
