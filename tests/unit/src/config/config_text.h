// tests/unit/src/config/config_text.h — configuration text loaded the way
// petrel loads a file (loadConfig on a temporary file), for the tests of
// each configuration section.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

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

}  // namespace petrel
