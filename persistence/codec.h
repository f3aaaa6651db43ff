// persistence/codec.h — the little binary writer and reader behind records
// and batch op logs: fixed-width little-endian integers (the store is local
// to one machine) and strings as a u32 length plus bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace petrel::persistence {

struct Out {
  std::string& s;
  void u8(uint8_t v) { s.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) { s.append(reinterpret_cast<const char*>(&v), 2); }
  void u32(uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
  void i64(int64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
  void str(std::string_view v) {
    u32(static_cast<uint32_t>(v.size()));
    s.append(v);
  }
};

// The same fields written into room made for all of them at once
// (Put::into): one growth of the string, then no capacity check per field.
// For the records written for every message (a batch's message and queue
// entry puts, its queue entry deletes); the size the caller gives must be
// what it then writes.
struct Put {
  char* p;
  // Appends `n` bytes to `s` and writes from the first of them.
  static Put into(std::string& s, size_t n) {
    const size_t at = s.size();
    s.resize(at + n);
    return Put{s.data() + at};
  }
  void u8(uint8_t v) { *p++ = static_cast<char>(v); }
  void u16(uint16_t v) { bytes(&v, 2); }
  void u32(uint32_t v) { bytes(&v, 4); }
  void u64(uint64_t v) { bytes(&v, 8); }
  void i64(int64_t v) { bytes(&v, 8); }
  void str(std::string_view v) {
    u32(static_cast<uint32_t>(v.size()));
    if (!v.empty()) bytes(v.data(), v.size());
  }
  void bytes(const void* d, size_t n) {
    std::memcpy(p, d, n);
    p += n;
  }
};

struct In {
  std::string_view d;
  size_t p = 0;
  bool ok = true;
  bool need(size_t n) {
    if (!ok || d.size() - p < n) ok = false;
    return ok;
  }
  uint8_t u8() { return need(1) ? static_cast<uint8_t>(d[p++]) : 0; }
  template <typename T>
  T fixed() {
    T v{};
    if (need(sizeof v)) {
      std::memcpy(&v, d.data() + p, sizeof v);
      p += sizeof v;
    }
    return v;
  }
  std::string_view view() {
    uint32_t n = fixed<uint32_t>();
    if (!need(n)) return {};
    std::string_view v = d.substr(p, n);
    p += n;
    return v;
  }
  std::string str() { return std::string(view()); }
  bool done() const { return ok && p == d.size(); }
  bool atEnd() const { return p >= d.size(); }
};

}  // namespace petrel::persistence
