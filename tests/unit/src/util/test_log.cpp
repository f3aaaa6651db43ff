// Log lines carry text from peers (client ids, user names, topics): it must
// never end a line, forge another one or reach the terminal as escapes.
#include <gtest/gtest.h>

#include "src/util/log.h"

namespace petrel {
namespace {

std::string esc(std::string_view s) {
  std::string out;
  escapeForLog(s, out);
  return out;
}

TEST(LogEscape, ControlCharactersAndBackslashes) {
  EXPECT_EQ(esc("plain text: 'ok' \"ok\""), "plain text: 'ok' \"ok\"");
  EXPECT_EQ(esc("mallory\n2026-11-30T00:00:00.000Z notice: forged"),
            "mallory\\n2026-11-30T00:00:00.000Z notice: forged");
  EXPECT_EQ(esc("\x1b[31mred\r\t\x7f"), "\\x1b[31mred\\r\\t\\x7f");
  EXPECT_EQ(esc(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(esc("back\\slash"), "back\\slash");  // only quoted() doubles them
}

TEST(LogEscape, Utf8IsKeptAndGarbageIsNot) {
  EXPECT_EQ(esc("pä ss – 温度 🌡"), "pä ss – 温度 🌡");
  EXPECT_EQ(esc("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(esc("\xc3"), "\\xc3");               // truncated sequence
  EXPECT_EQ(esc("\xc0\xaf"), "\\xc0\\xaf");      // overlong '/'
  EXPECT_EQ(esc("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(esc("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
}

TEST(LogEscape, QuotedBoundsAndEscapesQuotes) {
  EXPECT_EQ(quoted("it's \"x\""), "it\\'s \\\"x\\\"");
  EXPECT_EQ(quoted("a\\b"), "a\\\\b");
  const std::string longer(1000, 'a');
  EXPECT_EQ(quoted(longer, 10), "aaaaaaaaaa...(1000 bytes)");
  EXPECT_EQ(quoted("a\nb"), "a\\nb");
}

}  // namespace
}  // namespace petrel
