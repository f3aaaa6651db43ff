// limits.max_connect_wait: how long a CONNECT the broker holds may wait,
// in seconds, 1..86400, 120 by default; anything else names the key and line.
#include <gtest/gtest.h>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

class ConnectWaitConfig : public ConfigTextTest {};

TEST_F(ConnectWaitConfig, TwoMinutesByDefault) {
  ASSERT_TRUE(load("log_level: info\n")) << error_;
  EXPECT_EQ(cfg_.max_connect_wait, 120u);
}

TEST_F(ConnectWaitConfig, SecondsFromOneToADay) {
  ASSERT_TRUE(load("limits:\n  max_connect_wait: 1\n")) << error_;
  EXPECT_EQ(cfg_.max_connect_wait, 1u);
  ASSERT_TRUE(load("limits:\n  max_connect_wait: 86400\n")) << error_;
  EXPECT_EQ(cfg_.max_connect_wait, 86400u);
}

TEST_F(ConnectWaitConfig, AnythingElseNamesTheKeyAndLine) {
  expectError("limits:\n  max_connect_wait: 0\n", "limits.max_connect_wait", 2);
  expectError("limits:\n  max_inflight: 10\n  max_connect_wait: 86401\n", "limits.max_connect_wait", 3);
  expectError("limits:\n  max_connect_wait: soon\n", "limits.max_connect_wait", 2);
}

}  // namespace
}  // namespace petrel
