// src/util/log.h — leveled logging to stderr. One line per event, prefixed with
// the wall-clock time and the level; printf-style formatting so that a
// disabled level costs one comparison.
#pragma once

#include <string_view>

namespace petrel {

enum class LogLevel { Debug = 0, Info, Notice, Warning, Error };

// Returns false for an unknown level name.
bool parseLogLevel(std::string_view name, LogLevel& out);
void setLogLevel(LogLevel level);
bool logEnabled(LogLevel level);

void logWrite(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace petrel

#define PETREL_LOG(level, ...)                                              \
  do {                                                                      \
    if (::petrel::logEnabled(level)) ::petrel::logWrite(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) PETREL_LOG(::petrel::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) PETREL_LOG(::petrel::LogLevel::Info, __VA_ARGS__)
#define LOG_NOTICE(...) PETREL_LOG(::petrel::LogLevel::Notice, __VA_ARGS__)
#define LOG_WARN(...) PETREL_LOG(::petrel::LogLevel::Warning, __VA_ARGS__)
#define LOG_ERROR(...) PETREL_LOG(::petrel::LogLevel::Error, __VA_ARGS__)
