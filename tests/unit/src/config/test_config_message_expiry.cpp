// The `message_expiry:` rules and `mqtt.max_message_expiry` in the
// configuration file: parsed in order, checked strictly (the key and its
// line in every error).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

class ConfigFile : public ConfigTextTest {};

TEST_F(ConfigFile, NoRulesAndNoCapByDefault) {
  ASSERT_TRUE(load("log_level: info\n")) << error_;
  EXPECT_TRUE(cfg_.message_expiry.rules().empty());
  EXPECT_EQ(cfg_.message_expiry.cap(), 0u);
  ASSERT_TRUE(load("message_expiry: []\n")) << error_;
  EXPECT_TRUE(cfg_.message_expiry.rules().empty());
  ASSERT_TRUE(load("message_expiry:\n")) << error_;
  EXPECT_TRUE(cfg_.message_expiry.rules().empty());
}

TEST_F(ConfigFile, RulesAreReadInOrder) {
  ASSERT_TRUE(load("message_expiry:\n"
                   "  - filter: signup/sms/#\n"
                   "    seconds: 1800\n"
                   "  - {filter: 'signup/#', seconds: 86400}\n"
                   "  - filter: logs/audit/+\n"
                   "    seconds: 0\n"
                   "mqtt:\n"
                   "  max_message_expiry: 604800\n"))
      << error_;
  const auto& r = cfg_.message_expiry.rules();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].filter, "signup/sms/#");
  EXPECT_EQ(r[0].seconds, 1800u);
  EXPECT_EQ(r[1].filter, "signup/#");
  EXPECT_EQ(r[1].seconds, 86400u);
  EXPECT_EQ(r[2].filter, "logs/audit/+");
  EXPECT_EQ(r[2].seconds, 0u);
  EXPECT_EQ(cfg_.message_expiry.cap(), 604800u);
  EXPECT_EQ(cfg_.message_expiry.lifetime("signup/sms/1", std::nullopt), 1800u);
  EXPECT_EQ(cfg_.message_expiry.lifetime("signup/mail/1", std::nullopt), 86400u);
}

TEST_F(ConfigFile, TheLargestValuesAreAccepted) {
  ASSERT_TRUE(load("message_expiry:\n  - filter: '#'\n    seconds: 4294967295\n"
                   "mqtt:\n  max_message_expiry: 4294967295\n"))
      << error_;
  EXPECT_EQ(cfg_.message_expiry.rules().at(0).seconds, 4294967295u);
  EXPECT_EQ(cfg_.message_expiry.cap(), 4294967295u);
}

TEST_F(ConfigFile, BadRulesNameTheKeyAndLine) {
  expectError("log_level: info\nmessage_expiry:\n  - filter: a/#/b\n    seconds: 5\n",
              "message_expiry[0].filter", 3);
  expectError("message_expiry:\n  - filter: ok/#\n    seconds: 5\n  - filter: 'x+'\n    seconds: 5\n",
              "message_expiry[1].filter", 4);
  expectError("message_expiry:\n  - filter: $share/g/t\n    seconds: 5\n", "message_expiry[0].filter", 2);
  expectError("message_expiry:\n  - filter: ''\n    seconds: 5\n", "message_expiry[0].filter", 2);
  expectError("message_expiry:\n  - filter: a\n    seconds: -1\n", "message_expiry[0].seconds", 3);
  expectError("message_expiry:\n  - filter: a\n    seconds: 4294967296\n", "message_expiry[0].seconds", 3);
  expectError("message_expiry:\n  - filter: a\n    seconds: soon\n", "message_expiry[0].seconds", 3);
  expectError("message_expiry:\n  - filter: a\n", "message_expiry[0].seconds", 2);
  expectError("message_expiry:\n  - seconds: 3\n", "message_expiry[0].filter", 2);
  expectError("message_expiry:\n  - filter: a\n    seconds: 3\n    secs: 4\n", "message_expiry[0].secs", 4);
  expectError("message_expiry:\n  filter: a\n", "message_expiry", 2);
  expectError("message_expiry: 30\n", "message_expiry", 1);
  expectError("message_expiry:\n  - a/b\n", "message_expiry[0]", 2);
  expectError("mqtt:\n  max_message_expiry: -5\n", "mqtt.max_message_expiry", 2);
  expectError("mqtt:\n  max_message_expiry: 4294967296\n", "mqtt.max_message_expiry", 2);
}

}  // namespace
}  // namespace petrel
