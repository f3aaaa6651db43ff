#include "mqtt/codec_util.h"

#include <cstdint>

#include "mqtt/words.h"

namespace petrel::mqtt {

bool validUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  while (true) {
    // A run of plain ASCII without NUL (the whole of most strings): eight
    // bytes at a time -- no high bit set, and no zero byte (exact test, no
    // carries between bytes) -- then byte by byte.
    if (end - p >= 8) {
      do {
        if (!words::plainAscii(words::load(reinterpret_cast<const char*>(p)))) break;
        p += 8;
      } while (end - p >= 8);
      // Fewer than eight left: the last eight at once. Those before p have
      // been checked; should one of them not be plain ASCII (the end of a
      // multi-byte character), the test fails and the bytes go one at a
      // time.
      if (end - p < 8 && p < end && words::plainAscii(words::load(reinterpret_cast<const char*>(end - 8)))) return true;
    }
    while (p < end && static_cast<unsigned char>(*p - 1) < 0x7F) ++p;  // 0x01..0x7F
    if (p == end) return true;
    const unsigned char c = *p;
    if (c == 0) return false;  // [MQTT-1.5.4-2]
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; }
    else return false;
    if (static_cast<size_t>(end - p) <= n) return false;
    for (size_t i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates [MQTT-1.5.4-1], beyond U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    if (cp > 0x10FFFF) return false;
    p += n + 1;
  }
}

bool Reader::utf8(std::string& v) {
  uint16_t n;
  if (!u16(n) || remaining() < n) return false;
  std::string_view sv(reinterpret_cast<const char*>(data_ + pos_), n);
  if (!validUtf8(sv)) return false;
  v.assign(sv);
  pos_ += n;
  return true;
}

}  // namespace petrel::mqtt
