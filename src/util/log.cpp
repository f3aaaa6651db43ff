#include "src/util/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace petrel {

namespace {
LogLevel g_level = LogLevel::Info;
}

bool parseLogLevel(std::string_view n, LogLevel& out) {
  if (n == "debug") out = LogLevel::Debug;
  else if (n == "info") out = LogLevel::Info;
  else if (n == "notice") out = LogLevel::Notice;
  else if (n == "warning") out = LogLevel::Warning;
  else if (n == "error") out = LogLevel::Error;
  else return false;
  return true;
}

void setLogLevel(LogLevel level) { g_level = level; }
bool logEnabled(LogLevel level) { return level >= g_level; }

namespace {

// Length of the valid UTF-8 sequence at `p` (of at most `n` bytes), 0 if
// there is none (RFC 3629: no overlongs, no surrogates, at most U+10FFFF).
size_t utf8Length(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return len;
}

void escapeInto(std::string_view in, std::string& out, bool quotes) {
  static const char hex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c >= 0x20 && c < 0x7F) {
      // Backslashes only inside quoted(): the line escape runs over its
      // output again and must not double them.
      if (quotes && (c == '\\' || c == '\'' || c == '"')) out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (c >= 0x80) {
      const size_t len = utf8Length(p + i, n - i);
      if (len > 0) {
        out.append(reinterpret_cast<const char*>(p + i), len);
        i += len;
        continue;
      }
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\x";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
    ++i;
  }
}

}  // namespace

void escapeForLog(std::string_view in, std::string& out) { escapeInto(in, out, false); }

std::string quoted(std::string_view s, size_t max) {
  std::string out;
  escapeInto(s.substr(0, max), out, true);
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

void logWrite(LogLevel level, const char* fmt, ...) {
  static const char* names[] = {"debug", "info", "notice", "warning", "error"};
  char line[2048];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
                   t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                   t.tm_sec, ts.tv_nsec / 1000000, names[static_cast<int>(level)]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  // Whatever the arguments held, the line stays one printable line.
  thread_local std::string out;
  out.assign(line, n);
  escapeInto(std::string_view(line + n, len - n), out, false);
  out.push_back('\n');
  fwrite(out.data(), 1, out.size(), stderr);
}

}  // namespace petrel
