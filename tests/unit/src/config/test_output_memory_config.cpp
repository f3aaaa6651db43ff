// `limits.max_output_memory:` in the configuration file: auto (the
// default: sized from the memory the process may use when the broker
// starts), or a number of bytes; anything else names the key and line.
#include <gtest/gtest.h>

#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

class OutputMemoryConfig : public ConfigTextTest {};

TEST_F(OutputMemoryConfig, AutoByDefault) {
  ASSERT_TRUE(load("log_level: info\n")) << error_;
  EXPECT_EQ(cfg_.max_output_memory, 0u);  // 0: auto
  ASSERT_TRUE(load("limits:\n  max_output_memory: auto\n")) << error_;
  EXPECT_EQ(cfg_.max_output_memory, 0u);
}

TEST_F(OutputMemoryConfig, BytesFromOneMebibyte) {
  ASSERT_TRUE(load("limits:\n  max_output_memory: 1048576\n")) << error_;
  EXPECT_EQ(cfg_.max_output_memory, 1048576u);
  ASSERT_TRUE(load("limits:\n  max_output_memory: 1073741824\n")) << error_;
  EXPECT_EQ(cfg_.max_output_memory, 1073741824u);
}

TEST_F(OutputMemoryConfig, AnythingElseNamesTheKeyAndLine) {
  expectError("limits:\n  max_output_memory: 0\n", "limits.max_output_memory", 2);
  expectError("limits:\n  max_inflight: 10\n  max_output_memory: 1048575\n", "limits.max_output_memory", 3);
  expectError("limits:\n  max_output_memory: lots\n", "limits.max_output_memory", 2);
  expectError("limits:\n  max_output_memory: [1]\n", "limits.max_output_memory", 2);
  EXPECT_NE(error_.find("auto"), std::string::npos) << error_;  // says what is allowed
}

}  // namespace
}  // namespace petrel
