// Unit tests for mqtt/codec_util: the primitive encodings of §1.5 (two- and
// four-byte integers, Variable Byte Integers, strings, binary data) and the
// UTF-8 validation rules of §1.5.4.
#include "mqtt/codec_util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace petrel::mqtt {
namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

const uint8_t* u8p(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// ---------------------------------------------------------------------------
// Variable Byte Integer (§1.5.5)

struct VarintCase {
  uint32_t value;
  std::string wire;
};

std::vector<VarintCase> varintCases() {
  return {
      {0, bytes({0x00})},
      {1, bytes({0x01})},
      {127, bytes({0x7F})},
      {128, bytes({0x80, 0x01})},
      {16383, bytes({0xFF, 0x7F})},
      {16384, bytes({0x80, 0x80, 0x01})},
      {2097151, bytes({0xFF, 0xFF, 0x7F})},
      {2097152, bytes({0x80, 0x80, 0x80, 0x01})},
      {268435455, bytes({0xFF, 0xFF, 0xFF, 0x7F})},
  };
}

TEST(CodecVarint, EncodesSpecBoundaries) {
  for (const auto& c : varintCases()) {
    std::string out;
    putVarint(out, c.value);
    EXPECT_EQ(out, c.wire) << "value " << c.value;
    EXPECT_EQ(varintSize(c.value), c.wire.size()) << "value " << c.value;
  }
}

TEST(CodecVarint, DecodesSpecBoundaries) {
  for (const auto& c : varintCases()) {
    Reader r(u8p(c.wire), c.wire.size());
    uint32_t v = 12345;
    ASSERT_TRUE(r.varint(v)) << "value " << c.value;
    EXPECT_EQ(v, c.value);
    EXPECT_TRUE(r.atEnd());
    EXPECT_EQ(r.pos(), c.wire.size());
  }
}

TEST(CodecVarint, RoundTripsAcrossTheRange) {
  for (uint32_t v = 0; v < 70000; v += 7) {
    std::string out;
    putVarint(out, v);
    ASSERT_EQ(out.size(), varintSize(v));
    Reader r(u8p(out), out.size());
    uint32_t back = 0;
    ASSERT_TRUE(r.varint(back));
    ASSERT_EQ(back, v);
  }
  for (uint32_t v : {2097150u, 2097153u, 100000000u, 268435454u}) {
    std::string out;
    putVarint(out, v);
    Reader r(u8p(out), out.size());
    uint32_t back = 0;
    ASSERT_TRUE(r.varint(back));
    EXPECT_EQ(back, v);
  }
}

TEST(CodecVarint, DecoderStopsAfterTheLastByte) {
  // A varint followed by more data: only the varint is consumed.
  std::string s = bytes({0x80, 0x01, 0x55});
  Reader r(u8p(s), s.size());
  uint32_t v = 0;
  ASSERT_TRUE(r.varint(v));
  EXPECT_EQ(v, 128u);
  EXPECT_EQ(r.pos(), 2u);
  uint8_t b = 0;
  ASSERT_TRUE(r.u8(b));
  EXPECT_EQ(b, 0x55);
}

TEST(CodecVarint, FiveBytesAreRejected) {
  // The continuation bit is still set on the fourth byte.
  for (const std::string& s :
       {bytes({0xFF, 0xFF, 0xFF, 0xFF, 0x7F}), bytes({0x80, 0x80, 0x80, 0x80, 0x01}),
        bytes({0x80, 0x80, 0x80, 0x80, 0x00})}) {
    Reader r(u8p(s), s.size());
    uint32_t v = 0;
    EXPECT_FALSE(r.varint(v));
  }
}

TEST(CodecVarint, TruncatedIsRejected) {
  for (const std::string& s : {std::string(), bytes({0x80}), bytes({0xFF, 0xFF}),
                               bytes({0x80, 0x80, 0x80})}) {
    Reader r(u8p(s), s.size());
    uint32_t v = 0;
    EXPECT_FALSE(r.varint(v)) << "length " << s.size();
  }
}

// ---------------------------------------------------------------------------
// Fixed-width integers, strings, binary data

TEST(CodecIntegers, BigEndianEncoding) {
  std::string out;
  putU16(out, 0x1234);
  putU32(out, 0xA1B2C3D4u);
  putU16(out, 0);
  putU16(out, 0xFFFF);
  EXPECT_EQ(out, bytes({0x12, 0x34, 0xA1, 0xB2, 0xC3, 0xD4, 0x00, 0x00, 0xFF, 0xFF}));

  Reader r(u8p(out), out.size());
  uint16_t a = 0, c = 1, d = 0;
  uint32_t b = 0;
  ASSERT_TRUE(r.u16(a));
  ASSERT_TRUE(r.u32(b));
  ASSERT_TRUE(r.u16(c));
  ASSERT_TRUE(r.u16(d));
  EXPECT_EQ(a, 0x1234);
  EXPECT_EQ(b, 0xA1B2C3D4u);
  EXPECT_EQ(c, 0);
  EXPECT_EQ(d, 0xFFFF);
  EXPECT_TRUE(r.atEnd());
}

TEST(CodecIntegers, ShortReadsFail) {
  std::string one = bytes({0x01});
  std::string three = bytes({0x01, 0x02, 0x03});
  uint8_t b8;
  uint16_t b16;
  uint32_t b32;
  {
    Reader r(u8p(one), 0);
    EXPECT_FALSE(r.u8(b8));
  }
  {
    Reader r(u8p(one), one.size());
    EXPECT_FALSE(r.u16(b16));
  }
  {
    Reader r(u8p(three), three.size());
    EXPECT_FALSE(r.u32(b32));
  }
}

TEST(CodecStrings, RoundTrip) {
  std::string out;
  putString(out, "");
  putString(out, "MQTT");
  putString(out, "h\xC3\xA9llo");
  EXPECT_EQ(out.substr(0, 8), bytes({0x00, 0x00, 0x00, 0x04, 'M', 'Q', 'T', 'T'}));

  Reader r(u8p(out), out.size());
  std::string a = "x", b, c;
  ASSERT_TRUE(r.utf8(a));
  ASSERT_TRUE(r.utf8(b));
  ASSERT_TRUE(r.utf8(c));
  EXPECT_EQ(a, "");
  EXPECT_EQ(b, "MQTT");
  EXPECT_EQ(c, "h\xC3\xA9llo");
  EXPECT_TRUE(r.atEnd());
}

TEST(CodecStrings, LengthBeyondDataFails) {
  std::string s = bytes({0x00, 0x05, 'a', 'b', 'c'});
  Reader r(u8p(s), s.size());
  std::string v;
  EXPECT_FALSE(r.utf8(v));
  Reader r2(u8p(s), s.size());
  EXPECT_FALSE(r2.binary(v));
  Reader r3(u8p(s), 1);  // not even the length
  EXPECT_FALSE(r3.utf8(v));
}

TEST(CodecStrings, Utf8ReaderRejectsInvalidContent) {
  std::string out;
  putString(out, std::string("a\0b", 3));
  Reader r(u8p(out), out.size());
  std::string v;
  EXPECT_FALSE(r.utf8(v));

  std::string bad;
  putString(bad, "\xED\xA0\x80");
  Reader r2(u8p(bad), bad.size());
  EXPECT_FALSE(r2.utf8(v));
}

TEST(CodecBinary, KeepsArbitraryBytes) {
  const std::string data("\x00\xFF\xED\xA0\x80\xC0\x80", 7);
  std::string out;
  putString(out, data);  // binary data has the same wire form
  Reader r(u8p(out), out.size());
  std::string v;
  ASSERT_TRUE(r.binary(v));
  EXPECT_EQ(v, data);
  EXPECT_TRUE(r.atEnd());
}

TEST(CodecBinary, BytesAndSkip) {
  std::string s = "abcdef";
  Reader r(u8p(s), s.size());
  std::string v;
  ASSERT_TRUE(r.bytes(v, 2));
  EXPECT_EQ(v, "ab");
  r.skip(2);
  EXPECT_EQ(r.remaining(), 2u);
  EXPECT_FALSE(r.bytes(v, 3));
  ASSERT_TRUE(r.bytes(v, 2));
  EXPECT_EQ(v, "ef");
  EXPECT_TRUE(r.atEnd());
}

TEST(CodecReader, StartsAtTheGivenPosition) {
  std::string s = bytes({0xAA, 0xBB, 0x00, 0x07});
  Reader r(u8p(s), s.size(), 2);
  EXPECT_EQ(r.pos(), 2u);
  EXPECT_EQ(r.remaining(), 2u);
  uint16_t v = 0;
  ASSERT_TRUE(r.u16(v));
  EXPECT_EQ(v, 7);
}

// ---------------------------------------------------------------------------
// UTF-8 validation (§1.5.4)

TEST(CodecUtf8, AcceptsWellFormedText) {
  const std::vector<std::string> ok = {
      "",
      "plain ascii / with + and #",
      "\x01\x7F",                      // lowest and highest non-zero 1-byte forms
      "\xC2\x80",                      // U+0080, lowest 2-byte
      "h\xC3\xA9llo",                  // é
      "\xDF\xBF",                      // U+07FF, highest 2-byte
      "\xE0\xA0\x80",                  // U+0800, lowest 3-byte
      "\xE2\x82\xAC",                  // €
      "\xE6\x97\xA5\xE6\x9C\xAC",      // 日本
      "\xED\x9F\xBF",                  // U+D7FF, just below the surrogates
      "\xEE\x80\x80",                  // U+E000, just above the surrogates
      "\xEF\xBB\xBF",                  // U+FEFF (BOM) must not be stripped or refused
      "\xF0\x90\x80\x80",              // U+10000, lowest 4-byte
      "\xF0\x9D\x84\x9E",              // musical G clef
      "\xF0\x9F\x98\x80 smile",        // emoji followed by ASCII
      "\xF4\x8F\xBF\xBF",              // U+10FFFF, the highest code point
  };
  for (const auto& s : ok) EXPECT_TRUE(validUtf8(s)) << "bytes of length " << s.size();
}

TEST(CodecUtf8, RejectsNullCharacter) {
  EXPECT_FALSE(validUtf8(std::string("\0", 1)));
  EXPECT_FALSE(validUtf8(std::string("abc\0", 4)));
  EXPECT_FALSE(validUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(validUtf8("\xC0\x80"));  // the "modified UTF-8" null is overlong
}

TEST(CodecUtf8, RejectsOverlongForms) {
  const std::vector<std::string> bad = {
      "\xC0\xAF",              // '/' in two bytes
      "\xC1\xBF",              // U+007F in two bytes
      "\xE0\x80\x80",          // U+0000 in three bytes
      "\xE0\x80\xAF",          // '/' in three bytes
      "\xE0\x9F\xBF",          // U+07FF in three bytes
      "\xF0\x80\x80\x80",      // U+0000 in four bytes
      "\xF0\x80\x80\xAF",      // '/' in four bytes
      "\xF0\x8F\xBF\xBF",      // U+FFFF in four bytes
  };
  for (const auto& s : bad) EXPECT_FALSE(validUtf8(s)) << "lead byte " << int(uint8_t(s[0]));
}

TEST(CodecUtf8, RejectsSurrogates) {
  EXPECT_FALSE(validUtf8("\xED\xA0\x80"));  // U+D800
  EXPECT_FALSE(validUtf8("\xED\xAD\xBF"));  // U+DB7F
  EXPECT_FALSE(validUtf8("\xED\xB0\x80"));  // U+DC00
  EXPECT_FALSE(validUtf8("\xED\xBF\xBF"));  // U+DFFF
  EXPECT_FALSE(validUtf8("\xED\xA0\xBD\xED\xB8\x80"));  // a CESU-8 surrogate pair
  EXPECT_FALSE(validUtf8("ok\xED\xB2\x80ok"));
}

TEST(CodecUtf8, RejectsCodePointsAboveU10FFFF) {
  EXPECT_FALSE(validUtf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(validUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(validUtf8("\xF7\xBF\xBF\xBF"));  // U+1FFFFF
  EXPECT_FALSE(validUtf8("\xF8\x88\x80\x80\x80"));  // old 5-byte form
  EXPECT_FALSE(validUtf8("\xFC\x84\x80\x80\x80\x80"));  // old 6-byte form
  EXPECT_FALSE(validUtf8("\xFE"));
  EXPECT_FALSE(validUtf8("\xFF"));
}

TEST(CodecUtf8, RejectsTruncatedSequences) {
  const std::vector<std::string> bad = {
      "\xC3",                  // 2-byte lead at the end
      "\xE2\x82",              // 3-byte sequence missing one byte
      "\xE2",
      "\xF0\x9D\x84",          // 4-byte sequence missing one byte
      "\xF0\x9D",
      "\xF0",
      "abc\xC3",               // truncated after valid text
      "\xC3" "A",              // lead byte followed by ASCII
      "\xE2\x82" "A",
      "\xF0\x9D\x84" "A",
      "\xE2" "\xC3\xA9",       // lead byte followed by another lead byte
  };
  for (const auto& s : bad) EXPECT_FALSE(validUtf8(s)) << "length " << s.size();
}

TEST(CodecUtf8, RejectsStrayContinuationBytes) {
  EXPECT_FALSE(validUtf8("\x80"));
  EXPECT_FALSE(validUtf8("\xBF"));
  EXPECT_FALSE(validUtf8("a\x80" "b"));
  EXPECT_FALSE(validUtf8("\xC3\xA9\xA9"));  // one continuation too many
}

}  // namespace
}  // namespace petrel::mqtt
