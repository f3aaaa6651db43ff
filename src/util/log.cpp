#include "src/util/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

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
  line[len++] = '\n';
  fwrite(line, 1, len, stderr);
}

}  // namespace petrel
