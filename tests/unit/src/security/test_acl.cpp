// ACL file parsing and decisions, mosquitto semantics.
#include <gtest/gtest.h>

#include "src/security/acl.h"

namespace petrel {
namespace {

const std::optional<std::string> kAnon;
std::optional<std::string> user(const char* u) { return std::string(u); }

Acl parsed(const char* text) {
  Acl acl;
  std::string err;
  EXPECT_TRUE(acl.parse(text, "acl", err)) << err;
  return acl;
}

TEST(Acl, AnonymousTopicsComeBeforeTheFirstUserLine) {
  Acl acl = parsed(
      "# anonymous clients\n"
      "topic read public/#\n"
      "\n"
      "user alice\n"
      "topic readwrite alice/#\n");
  EXPECT_TRUE(acl.allows(kAnon, "c1", "public/news", Acl::kRead));
  EXPECT_FALSE(acl.allows(kAnon, "c1", "public/news", Acl::kWrite));
  EXPECT_FALSE(acl.allows(kAnon, "c1", "alice/x", Acl::kRead));
  EXPECT_TRUE(acl.allows(user("alice"), "c2", "alice/x", Acl::kWrite));
  EXPECT_TRUE(acl.allows(user("alice"), "c2", "alice", Acl::kRead));  // a/# matches a
  // Anonymous rules are not inherited by named users.
  EXPECT_FALSE(acl.allows(user("alice"), "c2", "public/news", Acl::kRead));
  // A user with no entries and no patterns: denied.
  EXPECT_FALSE(acl.allows(user("bob"), "c3", "alice/x", Acl::kRead));
}

TEST(Acl, AccessKeywords) {
  Acl acl = parsed(
      "user u\n"
      "topic read r/#\n"
      "topic write w/#\n"
      "topic readwrite rw/#\n"
      "topic plain/#\n");
  auto u = user("u");
  EXPECT_TRUE(acl.allows(u, "c", "r/1", Acl::kRead));
  EXPECT_FALSE(acl.allows(u, "c", "r/1", Acl::kWrite));
  EXPECT_FALSE(acl.allows(u, "c", "w/1", Acl::kRead));
  EXPECT_TRUE(acl.allows(u, "c", "w/1", Acl::kWrite));
  EXPECT_TRUE(acl.allows(u, "c", "rw/1", Acl::kRead));
  EXPECT_TRUE(acl.allows(u, "c", "rw/1", Acl::kWrite));
  EXPECT_TRUE(acl.allows(u, "c", "plain/1", Acl::kRead));  // no keyword = readwrite
  EXPECT_TRUE(acl.allows(u, "c", "plain/1", Acl::kWrite));
  EXPECT_FALSE(acl.allows(u, "c", "other", Acl::kRead));
}

TEST(Acl, DenyWinsWhereverItIsWritten) {
  Acl acl = parsed(
      "user u\n"
      "topic readwrite home/#\n"
      "topic deny home/secret/#\n");
  auto u = user("u");
  EXPECT_TRUE(acl.allows(u, "c", "home/kitchen", Acl::kRead));
  EXPECT_FALSE(acl.allows(u, "c", "home/secret/key", Acl::kRead));
  EXPECT_FALSE(acl.allows(u, "c", "home/secret", Acl::kWrite));
}

TEST(Acl, SingleLevelWildcardAndDollarTopics) {
  Acl acl = parsed(
      "user u\n"
      "topic read sensors/+/temp\n"
      "topic read #\n"
      "user ops\n"
      "topic read $SYS/#\n");
  auto u = user("u");
  EXPECT_TRUE(acl.allows(u, "c", "sensors/k1/temp", Acl::kRead));
  EXPECT_FALSE(acl.allows(u, "c", "$SYS/broker/load", Acl::kRead));  // '#' never reaches $ topics
  EXPECT_TRUE(acl.allows(user("ops"), "c", "$SYS/broker/load", Acl::kRead));
}

TEST(Acl, PatternsSubstituteClientIdAndUserName) {
  Acl acl = parsed(
      "pattern write devices/%c/status\n"
      "pattern readwrite users/%u/#\n"
      "pattern read shared/%u-inbox\n");
  EXPECT_TRUE(acl.allows(user("alice"), "dev1", "devices/dev1/status", Acl::kWrite));
  EXPECT_FALSE(acl.allows(user("alice"), "dev1", "devices/dev2/status", Acl::kWrite));
  EXPECT_FALSE(acl.allows(user("alice"), "dev1", "devices/dev1/status", Acl::kRead));
  EXPECT_TRUE(acl.allows(user("alice"), "dev1", "users/alice/inbox", Acl::kRead));
  EXPECT_FALSE(acl.allows(user("alice"), "dev1", "users/bob/inbox", Acl::kRead));
  // Only whole levels are substituted.
  EXPECT_FALSE(acl.allows(user("alice"), "dev1", "shared/alice-inbox", Acl::kRead));
  EXPECT_TRUE(acl.allows(user("x"), "dev1", "shared/%u-inbox", Acl::kRead));
  // Anonymous clients: %c patterns apply, %u patterns never do.
  EXPECT_TRUE(acl.allows(kAnon, "dev1", "devices/dev1/status", Acl::kWrite));
  EXPECT_FALSE(acl.allows(kAnon, "dev1", "users//inbox", Acl::kRead));
  // Wildcards in a client id or user name would widen a pattern: refused.
  EXPECT_FALSE(acl.allows(user("alice"), "+", "devices/+/status", Acl::kWrite));
  EXPECT_FALSE(acl.allows(user("#"), "dev1", "users/#/x", Acl::kRead));
}

TEST(Acl, UserEntriesAreCheckedBeforePatterns) {
  Acl acl = parsed(
      "user alice\n"
      "topic deny users/alice/private\n"
      "topic read extra/#\n"
      "pattern readwrite users/%u/#\n");
  auto a = user("alice");
  EXPECT_FALSE(acl.allows(a, "c", "users/alice/private", Acl::kRead));
  EXPECT_TRUE(acl.allows(a, "c", "users/alice/public", Acl::kRead));
  EXPECT_TRUE(acl.allows(a, "c", "extra/1", Acl::kRead));
  EXPECT_TRUE(acl.allows(user("bob"), "c", "users/bob/x", Acl::kWrite));
}

TEST(Acl, SubscriptionsNeedACoveringReadEntry) {
  Acl acl = parsed(
      "user u\n"
      "topic read a/#\n"
      "topic write w/#\n"
      "topic read s/+/t\n"
      "topic deny a/secret/#\n"
      "pattern read p/%c/#\n");
  auto u = user("u");
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "a/#"));
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "a/+/x"));
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "a"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "#"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "+/x"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "w/x"));  // write only
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "s/1/t"));
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "s/+/t"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "s/#"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "a/secret/#"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "a/secret/x"));
  EXPECT_TRUE(acl.allowsSubscribe(u, "c", "p/c/#"));
  EXPECT_FALSE(acl.allowsSubscribe(u, "c", "p/other/#"));
}

TEST(Acl, CoversFollowsFilterSemantics) {
  EXPECT_TRUE(aclCovers("#", "a/b"));
  EXPECT_TRUE(aclCovers("#", "#"));
  EXPECT_TRUE(aclCovers("a/#", "a"));
  EXPECT_TRUE(aclCovers("a/+", "a/+"));
  EXPECT_FALSE(aclCovers("a/+", "a/#"));
  EXPECT_FALSE(aclCovers("a/b", "a/+"));
  EXPECT_FALSE(aclCovers("a/b", "a/b/c"));
  EXPECT_FALSE(aclCovers("a/b/c", "a/b"));
  EXPECT_FALSE(aclCovers("#", "$SYS/#"));
  EXPECT_TRUE(aclCovers("$SYS/#", "$SYS/x"));
}

TEST(Acl, ParseErrorsNameTheLine) {
  Acl acl;
  std::string err;
  EXPECT_FALSE(acl.parse("user a\ntopic rw x\n", "acl.conf", err));
  EXPECT_EQ(err, "acl.conf:2: invalid access 'rw' (read, write, readwrite or deny)");
  EXPECT_FALSE(acl.parse("bogus line\n", "acl.conf", err));
  EXPECT_NE(err.find("acl.conf:1:"), std::string::npos);
  EXPECT_FALSE(acl.parse("topic read a/#/b\n", "acl.conf", err));
  EXPECT_NE(err.find("invalid topic filter"), std::string::npos);
  EXPECT_FALSE(acl.parse("user\n", "acl.conf", err));
  EXPECT_FALSE(acl.parse("topic\n", "acl.conf", err));
}

TEST(Acl, AFailedParseKeepsTheOldRules) {
  Acl acl = parsed("topic read x\n");
  std::string err;
  EXPECT_FALSE(acl.parse("topic nonsense here\n", "acl", err));
  EXPECT_TRUE(acl.allows(kAnon, "c", "x", Acl::kRead));
  EXPECT_EQ(acl.ruleCount(), 1u);
}

TEST(Acl, TopicsWithSpacesAndCarriageReturns) {
  Acl acl = parsed("user u\r\ntopic read my topic/#\r\n  # indented comment\n");
  EXPECT_TRUE(acl.allows(user("u"), "c", "my topic/x", Acl::kRead));
}

}  // namespace
}  // namespace petrel
