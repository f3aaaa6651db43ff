// Default message lifetimes by topic filter (message_expiry:) and the cap
// on every lifetime (mqtt.max_message_expiry).
#include <gtest/gtest.h>

#include "src/routing/message_lifetimes.h"

namespace petrel {
namespace {

TEST(MessageLifetimes, NothingConfiguredKeepsWhatThePublisherAsked) {
  MessageLifetimes l;
  EXPECT_EQ(l.lifetime("a/b", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("a/b", 30u), 30u);
}

TEST(MessageLifetimes, AMessageWithoutALifetimeGetsTheFirstMatchingRule) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("signup/sms/#", 1800));
  ASSERT_TRUE(l.add("signup/+/eu", 60));
  ASSERT_TRUE(l.add("signup/#", 7200));
  EXPECT_EQ(l.lifetime("signup/sms/eu", std::nullopt), 1800u);  // first match, not the most specific
  EXPECT_EQ(l.lifetime("signup/sms", std::nullopt), 1800u);     // '#' matches the parent level
  EXPECT_EQ(l.lifetime("signup/mail/eu", std::nullopt), 60u);
  EXPECT_EQ(l.lifetime("signup/mail/us", std::nullopt), 7200u);
  EXPECT_EQ(l.lifetime("signup", std::nullopt), 7200u);
  EXPECT_EQ(l.lifetime("orders/1", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("signupx/sms", std::nullopt), std::nullopt);
}

TEST(MessageLifetimes, ThePublishersOwnLifetimeWins) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("#", 10));
  EXPECT_EQ(l.lifetime("t", 500u), 500u);
  EXPECT_EQ(l.lifetime("t", std::nullopt), 10u);
}

TEST(MessageLifetimes, LevelsAreMatchedExactly) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("a/+/c", 1));
  ASSERT_TRUE(l.add("x/y", 2));
  ASSERT_TRUE(l.add("+", 3));
  EXPECT_EQ(l.lifetime("a/b/c", std::nullopt), 1u);
  EXPECT_EQ(l.lifetime("a//c", std::nullopt), 1u);  // an empty level is a level
  EXPECT_EQ(l.lifetime("a/b/c/d", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("a/b", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("x/y", std::nullopt), 2u);
  EXPECT_EQ(l.lifetime("x/yz", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("x/y/", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("solo", std::nullopt), 3u);
  EXPECT_EQ(l.lifetime("/solo", std::nullopt), std::nullopt);
}

TEST(MessageLifetimes, WildcardsAtTheStartDoNotMatchDollarTopics) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("#", 5));
  ASSERT_TRUE(l.add("+/broker/x", 6));
  EXPECT_EQ(l.lifetime("$SYS/broker/x", std::nullopt), std::nullopt);
  ASSERT_TRUE(l.add("$SYS/#", 7));
  EXPECT_EQ(l.lifetime("$SYS/broker/x", std::nullopt), 7u);
}

TEST(MessageLifetimes, ARuleOfZeroSecondsIsAnExceptionToTheRulesAfterIt) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("logs/audit/#", 0));
  ASSERT_TRUE(l.add("logs/#", 60));
  EXPECT_EQ(l.lifetime("logs/audit/x", std::nullopt), std::nullopt);
  EXPECT_EQ(l.lifetime("logs/debug", std::nullopt), 60u);
  ASSERT_NE(l.match("logs/audit/x"), nullptr);
  EXPECT_EQ(l.match("logs/audit/x")->filter, "logs/audit/#");
}

TEST(MessageLifetimes, TheCapBoundsAskedAndDefaultLifetimesButGivesNone) {
  MessageLifetimes l;
  l.setCap(100);
  EXPECT_EQ(l.lifetime("t", 1000u), 100u);
  EXPECT_EQ(l.lifetime("t", 50u), 50u);
  EXPECT_EQ(l.lifetime("t", std::nullopt), std::nullopt);  // no lifetime stays none
  ASSERT_TRUE(l.add("t", 3600));
  EXPECT_EQ(l.lifetime("t", std::nullopt), 100u);
  EXPECT_EQ(l.cap(), 100u);
}

TEST(MessageLifetimes, TheLongestLifetimeIsKept) {
  MessageLifetimes l;
  ASSERT_TRUE(l.add("#", 0xFFFFFFFFu));
  EXPECT_EQ(l.lifetime("t", std::nullopt), 0xFFFFFFFFu);
}

TEST(MessageLifetimes, InvalidAndSharedFiltersAreRefused) {
  MessageLifetimes l;
  EXPECT_FALSE(l.add("", 1));
  EXPECT_FALSE(l.add("a/#/b", 1));
  EXPECT_FALSE(l.add("a/b+", 1));
  EXPECT_FALSE(l.add("a#", 1));
  EXPECT_FALSE(l.add("$share/g/a", 1));
  EXPECT_FALSE(l.add("$share/g", 1));
  EXPECT_TRUE(l.rules().empty());
  EXPECT_TRUE(l.add("$shared/a", 1));  // an ordinary filter
  EXPECT_EQ(l.rules().size(), 1u);
}

TEST(MessageLifetimes, DozensOfRulesAreScannedInOrder) {
  MessageLifetimes l;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(l.add("fleet/" + std::to_string(i) + "/+", uint32_t(i + 1)));
  ASSERT_TRUE(l.add("fleet/#", 999));
  EXPECT_EQ(l.lifetime("fleet/0/t", std::nullopt), 1u);
  EXPECT_EQ(l.lifetime("fleet/49/t", std::nullopt), 50u);
  EXPECT_EQ(l.lifetime("fleet/50/t", std::nullopt), 999u);
  EXPECT_EQ(l.lifetime("fleet/49/t/u", std::nullopt), 999u);
}

}  // namespace
}  // namespace petrel
