// mqtt/codec_util.h — the primitive encodings of §1.5: two-byte integers,
// four-byte integers, Variable Byte Integers, UTF-8 strings and binary data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace petrel::mqtt {

// Each primitive is built in a small buffer and appended at once: one
// capacity check per field instead of one per byte (the encoders run for
// every packet sent).

// §1.5.5: 1 to 4 bytes, 7 bits each, high bit = continuation. Returns the
// number of bytes written to `b`, which has room for 5 (a value above the
// protocol's 268,435,455 takes 5 bytes; callers check limits before).
inline size_t varintBytes(char* b, uint32_t v) {
  size_t n = 0;
  do {
    uint8_t x = v & 0x7F;
    v >>= 7;
    if (v) x |= 0x80;
    b[n++] = static_cast<char>(x);
  } while (v);
  return n;
}

inline void putVarint(std::string& out, uint32_t v) {
  char b[5];
  out.append(b, varintBytes(b, v));
}

inline size_t varintSize(uint32_t v) {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

inline void putU16(std::string& out, uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
  out.append(b, 2);
}

inline void putU32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xFF),
                     static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
  out.append(b, 4);
}

inline void putString(std::string& out, std::string_view s) {
  putU16(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

// A bounds-checked reader over a packet body. Every getter returns false when
// the data runs out or is ill-formed; callers turn that into Malformed Packet.
class Reader {
 public:
  Reader(const uint8_t* data, size_t len, size_t pos = 0)
      : data_(data), len_(len), pos_(pos) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return len_ - pos_; }
  bool atEnd() const { return pos_ == len_; }

  bool u8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = data_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = (uint32_t(data_[pos_]) << 24) | (uint32_t(data_[pos_ + 1]) << 16) |
        (uint32_t(data_[pos_ + 2]) << 8) | uint32_t(data_[pos_ + 3]);
    pos_ += 4;
    return true;
  }
  // §1.5.5: at most 4 bytes. [MQTT-1.5.5-1] requires senders to use the
  // minimal encoding; a non-minimal one is still accepted on receipt.
  bool varint(uint32_t& v) {
    v = 0;
    for (int i = 0; i < 4; ++i) {
      if (remaining() < 1) return false;
      uint8_t b = data_[pos_++];
      v |= uint32_t(b & 0x7F) << (7 * i);
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool binary(std::string& v) {
    uint16_t n;
    if (!u16(n) || remaining() < n) return false;
    v.assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return true;
  }
  // A UTF-8 string; validated per §1.5.4.
  bool utf8(std::string& v);
  bool bytes(std::string& v, size_t n) {
    if (remaining() < n) return false;
    v.assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return true;
  }
  void skip(size_t n) { pos_ += n; }

 private:
  const uint8_t* data_;
  size_t len_;
  size_t pos_;
};

// §1.5.4: well-formed UTF-8 (no overlong forms, no surrogates, nothing above
// U+10FFFF) and [MQTT-1.5.4-2] no U+0000.
bool validUtf8(std::string_view s);

}  // namespace petrel::mqtt
