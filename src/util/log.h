// src/util/log.h — leveled logging to stderr. One line per event, prefixed with
// the wall-clock time and the level; printf-style formatting so that a
// disabled level costs one comparison.
//
// Client ids, user names, topics and other text from peers end up in log
// lines: every line is escaped after formatting (control characters and
// bytes that are not UTF-8 become \n, \x1b, \xff...), so
// no peer can end a line, forge one or send terminal escapes; a line is at
// most about 2 KB. quoted() bounds one peer string and escapes its quotes.
#pragma once

#include <string>
#include <string_view>

namespace petrel {

enum class LogLevel { Debug = 0, Info, Notice, Warning, Error };

// Returns false for an unknown level name.
bool parseLogLevel(std::string_view name, LogLevel& out);
void setLogLevel(LogLevel level);
bool logEnabled(LogLevel level);

void logWrite(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Escapes what logWrite escapes, in place of `out` (for tests and callers
// writing elsewhere): control characters and non-UTF-8 bytes.
void escapeForLog(std::string_view in, std::string& out);

// A peer-supplied string for a log line: at most `max` bytes of it (then
// "...(N bytes)"), with '\\', '\'' and '"' escaped as well, so that a
// quoted field ends where it should.
std::string quoted(std::string_view s, size_t max = 200);

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
