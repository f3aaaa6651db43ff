// /api/v1/stats: the JSON writer, and the document the status page reads.
#include <gtest/gtest.h>

#include <cmath>

#include "src/metrics/json.h"
#include "src/metrics/load_average.h"
#include "src/metrics/snapshot.h"
#include "src/metrics/top_topics.h"

namespace petrel {
namespace {

TEST(JsonWriter, CommasNestingAndEscaping) {
  JsonWriter j;
  j.beginObject();
  j.member("a", uint64_t{1});
  j.key("b").beginArray().value("x\"y\\z\n\x01").value(true).beginObject().endObject().endArray();
  j.member("c", 0.5);
  j.member("d", INFINITY);
  j.member("e", int64_t{-3});
  j.key("f").beginArray().endArray();
  j.endObject();
  EXPECT_EQ(j.text(), R"({"a":1,"b":["x\"y\\z\n\u0001",true,{}],"c":0.5,"d":null,"e":-3,"f":[]})");
}

TEST(JsonWriter, Utf8PassesThrough) {
  JsonWriter j;
  j.value("température/étage");
  EXPECT_EQ(j.text(), "\"température/étage\"");
}

MetricsSnapshot withGroups(size_t n) {
  MetricsSnapshot s;
  s.version = "0.1.0";
  for (size_t i = 0; i < n; ++i) {
    MetricsSnapshot::Group g;
    g.name = "g" + std::to_string(i);
    g.filter = "f/#";
    g.queued = i;
    s.groups.push_back(g);
  }
  return s;
}

TEST(StatsJson, HasWhatTheStatusPageReads) {
  MetricsSnapshot s = withGroups(2);
  s.stats.clients_connected = 3;
  s.stats.received_by_qos[0] = 4;
  s.stats.received_by_qos[2] = 1;
  s.rates.received = 2.5;
  s.history.resize(2);
  s.top_topics = {{"a/\"b\"", 7}};
  s.bridges.push_back({"hq", false, 1, 2, 3, 4, 5});
  const std::string t = statsJson(s);
  for (const char* want : {
           R"("version":"0.1.0")", R"("clients":{"connected":3,)", R"("rates":{"received_per_second":2.5,)",
           R"("history":[{)", R"("messages":{"received":5,)", R"("top_topics":[{"topic":"a/\"b\"","per_second":7}])",
           R"("share_groups_total":2)", R"("bridges":[{"name":"hq","up":false,)", R"("store":{"enabled":false,)",
           R"("delayed":{"enabled":false,)", R"("loop_lag_seconds":0)"})
    EXPECT_NE(t.find(want), std::string::npos) << want << "\n" << t;
  EXPECT_EQ(t.front(), '{');
  EXPECT_EQ(t.back(), '}');
}

TEST(StatsJson, DeepestShareGroupsFirstAndCapped) {
  const std::string t = statsJson(withGroups(10), 3);
  EXPECT_NE(t.find(R"("share_groups_total":10)"), std::string::npos);
  const size_t g9 = t.find(R"("group":"g9")"), g8 = t.find(R"("group":"g8")"), g7 = t.find(R"("group":"g7")");
  ASSERT_NE(g9, std::string::npos);
  EXPECT_LT(g9, g8);
  EXPECT_LT(g8, g7);
  EXPECT_EQ(t.find(R"("group":"g6")"), std::string::npos);
}

TEST(LoadAverage, ConvergesToTheRateAMinute) {
  LoadAverage l;
  uint64_t total = 0;
  l.update(total, 1);  // primes
  for (int i = 0; i < 3600; ++i) {
    total += 10;  // 10 a second = 600 a minute
    l.update(total, 1);
  }
  EXPECT_NEAR(l.perMinute(0), 600, 0.5);
  EXPECT_NEAR(l.perMinute(1), 600, 1);
  EXPECT_NEAR(l.perMinute(2), 600, 12);
  // One minute of silence: the 1-minute figure falls to about 1/e.
  for (int i = 0; i < 60; ++i) l.update(total, 1);
  EXPECT_NEAR(l.perMinute(0), 600 / std::exp(1.0), 5);
  EXPECT_GT(l.perMinute(2), l.perMinute(0));
}

TEST(TopTopics, CountsEveryMessageAtLowRatesAndRanks) {
  TopTopics t;
  t.tick(0, 0);
  t.enable();
  for (int i = 0; i < 30; ++i) t.onPublish("busy");
  for (int i = 0; i < 3; ++i) t.onPublish("quiet");
  t.tick(1, 33);
  EXPECT_TRUE(t.top().empty());  // the window is not over
  t.tick(TopTopics::kWindowS, 0);
  ASSERT_EQ(t.top().size(), 2u);
  EXPECT_EQ(t.top()[0].topic, "busy");
  EXPECT_DOUBLE_EQ(t.top()[0].per_second, 30 / TopTopics::kWindowS);
  EXPECT_EQ(t.top()[1].topic, "quiet");
  EXPECT_EQ(t.tracked(), 0u);  // emptied for the next window
}

TEST(TopTopics, SamplesAtHighRatesAndStaysBounded) {
  TopTopics t;
  t.enable();
  t.tick(0, 0);
  t.tick(0.5, 200000);  // a high rate: about one message in a hundred is counted
  for (int i = 0; i < 300000; ++i) t.onPublish(i % 2 ? "hot" : "topic/" + std::to_string(i));
  EXPECT_LE(t.tracked(), TopTopics::kMaxTracked);
  t.tick(TopTopics::kWindowS, 200000);
  ASSERT_FALSE(t.top().empty());
  EXPECT_EQ(t.top()[0].topic, "hot");
  // 150000 messages in kWindowS seconds, estimated from samples.
  EXPECT_NEAR(t.top()[0].per_second, 150000 / TopTopics::kWindowS, 0.1 * 150000 / TopTopics::kWindowS);
}

TEST(TopTopics, OffUntilEnabled) {
  TopTopics t;
  for (int i = 0; i < 1000; ++i) t.onPublish("x");
  EXPECT_EQ(t.tracked(), 0u);
}

}  // namespace
}  // namespace petrel
