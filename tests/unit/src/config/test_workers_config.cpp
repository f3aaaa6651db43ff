// `workers:` in the configuration file: auto (the default), or a number of
// event loops from 1 to kMaxWorkers; anything else names the key and line.
#include <gtest/gtest.h>

#include <string>

#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"

namespace petrel {
namespace {

class WorkersConfig : public ConfigTextTest {};

TEST_F(WorkersConfig, AutoByDefault) {
  ASSERT_TRUE(load("log_level: info\n")) << error_;
  EXPECT_EQ(cfg_.workers, 0u);  // 0: one per core
  ASSERT_TRUE(load("workers: auto\n")) << error_;
  EXPECT_EQ(cfg_.workers, 0u);
}

TEST_F(WorkersConfig, NumbersFromOneToTheMaximum) {
  ASSERT_TRUE(load("workers: 1\n")) << error_;
  EXPECT_EQ(cfg_.workers, 1u);
  ASSERT_TRUE(load("workers: 4\n")) << error_;
  EXPECT_EQ(cfg_.workers, 4u);
  ASSERT_TRUE(load("workers: " + std::to_string(kMaxWorkers) + "\n")) << error_;
  EXPECT_EQ(cfg_.workers, kMaxWorkers);
}

TEST_F(WorkersConfig, AnythingElseNamesTheKeyAndLine) {
  expectError("log_level: info\nworkers: 0\n", "workers", 2);
  expectError("workers: -2\n", "workers", 1);
  expectError("workers: " + std::to_string(kMaxWorkers + 1) + "\n", "workers", 1);
  expectError("workers: many\n", "workers", 1);
  expectError("workers: 2.5\n", "workers", 1);
  expectError("workers: [2]\n", "workers", 1);
  EXPECT_NE(error_.find("auto"), std::string::npos) << error_;  // says what is allowed
}

}  // namespace
}  // namespace petrel
