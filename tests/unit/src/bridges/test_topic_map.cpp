// Bridge topic rules: local <-> remote topics, as mosquitto's `topic` lines.
#include <gtest/gtest.h>

#include "src/bridges/topic_map.h"

namespace petrel {
namespace {

BridgeTopic rule(std::string pattern, BridgeTopic::Direction d, std::string local_prefix = "",
                 std::string remote_prefix = "") {
  BridgeTopic t;
  t.pattern = std::move(pattern);
  t.direction = d;
  t.local_prefix = std::move(local_prefix);
  t.remote_prefix = std::move(remote_prefix);
  return t;
}

using D = BridgeTopic::Direction;

TEST(TopicMap, PrefixesAreSwappedBothWays) {
  std::vector<BridgeTopic> rules{rule("sensors/#", D::Both, "site/", "hq/site1/")};
  TopicMap map(rules);
  std::string out;
  ASSERT_TRUE(map.toRemote("site/sensors/t1", out));
  EXPECT_EQ(out, "hq/site1/sensors/t1");
  ASSERT_TRUE(map.toLocal("hq/site1/sensors/t2", out));
  EXPECT_EQ(out, "site/sensors/t2");
  EXPECT_FALSE(map.toRemote("sensors/t1", out));  // without the local prefix
  EXPECT_FALSE(map.toLocal("site/sensors/t1", out));
}

TEST(TopicMap, DirectionDecidesWhichWay) {
  std::vector<BridgeTopic> rules{rule("up/#", D::Out), rule("down/#", D::In)};
  TopicMap map(rules);
  std::string out;
  EXPECT_TRUE(map.toRemote("up/a", out));
  EXPECT_FALSE(map.toLocal("up/a", out));
  EXPECT_TRUE(map.toLocal("down/a", out));
  EXPECT_FALSE(map.toRemote("down/a", out));
}

TEST(TopicMap, FirstMatchingRuleWins) {
  std::vector<BridgeTopic> rules{rule("a/b", D::Out, "", "first/"), rule("a/#", D::Out, "", "second/")};
  TopicMap map(rules);
  std::string out;
  ASSERT_TRUE(map.toRemote("a/b", out));
  EXPECT_EQ(out, "first/a/b");
  ASSERT_TRUE(map.toRemote("a/c", out));
  EXPECT_EQ(out, "second/a/c");
}

TEST(TopicMap, EmptyPatternMapsWholeTopics) {
  // mosquitto: `topic "" out 1 local/full/topic remote/other/name`
  std::vector<BridgeTopic> rules{rule("", D::Both, "local/full/topic", "remote/other/name")};
  TopicMap map(rules);
  std::string out;
  ASSERT_TRUE(map.toRemote("local/full/topic", out));
  EXPECT_EQ(out, "remote/other/name");
  ASSERT_TRUE(map.toLocal("remote/other/name", out));
  EXPECT_EQ(out, "local/full/topic");
  EXPECT_FALSE(map.toRemote("local/full/topic/more", out));
}

TEST(TopicMap, WildcardsMatchAsInSubscriptions) {
  std::vector<BridgeTopic> rules{rule("+/temp", D::Out, "", "x/")};
  TopicMap map(rules);
  std::string out;
  ASSERT_TRUE(map.toRemote("room1/temp", out));
  EXPECT_EQ(out, "x/room1/temp");
  EXPECT_FALSE(map.toRemote("room1/sub/temp", out));
  // [MQTT-4.7.2-1] a leading wildcard does not match $ topics.
  EXPECT_FALSE(map.toRemote("$SYS/temp", out));
}

}  // namespace
}  // namespace petrel
