// tests/unit/src/config/config_text.h — configuration text loaded the way
// petrel loads a file (loadConfig on a temporary file), for the tests of
// each configuration section: as a call (loadText) or as a fixture that
// also checks that an error names the key and the line.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace petrel {

inline bool loadConfigText(const std::string& yaml, Config& cfg, std::string& error) {
  char path[] = "/tmp/petrel-config-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    error = "cannot create a temporary file";
    return false;
  }
  close(fd);
  std::ofstream(path) << yaml;
  error.clear();
  const bool ok = loadConfig(path, cfg, error);
  std::remove(path);
  return ok;
}

struct LoadedConfig {
  bool ok;
  Config cfg;
  std::string error;
};

inline LoadedConfig loadText(const std::string& yaml) {
  LoadedConfig l;
  l.ok = loadConfigText(yaml, l.cfg, l.error);
  return l;
}

// A text that must be refused, and a part of the error it must give
// (":LINE: key: what").
struct RefusedConfig {
  const char* yaml;
  const char* error;
};

inline void expectRefused(const std::vector<RefusedConfig>& cases) {
  for (const RefusedConfig& c : cases) {
    LoadedConfig l = loadText(c.yaml);
    EXPECT_FALSE(l.ok) << c.yaml;
    EXPECT_NE(l.error.find(c.error), std::string::npos) << "got: " << l.error << "\nwant: " << c.error;
  }
}

class ConfigTextTest : public ::testing::Test {
 protected:
  bool load(const std::string& text) { return loadConfigText(text, cfg_, error_); }
  // The error names the key and the line.
  void expectError(const std::string& text, const std::string& key, int line) {
    EXPECT_FALSE(load(text)) << text;
    EXPECT_NE(error_.find(key), std::string::npos) << error_;
    EXPECT_NE(error_.find("(line " + std::to_string(line) + ")"), std::string::npos) << error_;
  }

  std::string error_;
  Config cfg_;
};

}  // namespace petrel
