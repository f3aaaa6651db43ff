// fuzz_password: petrel::PasswordFile::parse on arbitrary password file text
// (mosquitto_passwd format, $6$ / $7$ hashes), then check() for the user
// names found in the text and PasswordFile::verify() on their hash fields.
//
// Checks: parsing and lookups never crash; a file is all or nothing: parsed,
// it has one user per line that is not blank or a comment, and a file whose
// every such line is `user:hash` with a well-formed hash (checked
// independently here) and distinct users is parsed; refused, it holds no
// user and says why; a parsed user with a well-formed hash is known to
// check(); check() says Ok only when the user's line verifies; a name that
// cannot be in the file is UnknownUser.
//
// Lookups cost a hash: $7$ hashes with many iterations would make them slow,
// so they are skipped for inputs that contain one (parsing still runs); users
// without a well-formed line are not looked up (an unknown user costs a hash
// at one of the file's costs), except for one fixed unknown name every 64
// inputs.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "src/security/password_file.h"

using petrel::PasswordFile;

namespace {

constexpr uint64_t kMaxIterations = 50;

// True when every "$7$<digits>" in the text has few iterations.
bool cheap(std::string_view t) {
  for (size_t p = t.find("$7$"); p != std::string_view::npos; p = t.find("$7$", p + 1)) {
    uint64_t n = 0;
    for (size_t i = p + 3; i < t.size() && i < p + 14 && t[i] >= '0' && t[i] <= '9'; ++i)
      n = n * 10 + uint64_t(t[i] - '0');
    if (n > kMaxIterations) return false;
  }
  return true;
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Whether `t` is base64 (trailing '=' ignored) of `bytes` bytes, or of at
// least one byte when bytes is 0.
bool base64Of(std::string_view t, size_t bytes) {
  while (!t.empty() && t.back() == '=') t.remove_suffix(1);
  if (t.size() % 4 == 1) return false;
  for (char c : t)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  const size_t n = t.size() * 6 / 8;
  return bytes ? n == bytes : n > 0;
}

// $6$salt$digest or $7$iterations$salt$digest with a 64-byte digest.
bool wellFormed(std::string_view h) {
  std::vector<std::string_view> f;
  for (size_t p = 0;;) {
    const size_t d = h.find('$', p);
    f.push_back(h.substr(p, d == std::string_view::npos ? std::string_view::npos : d - p));
    if (d == std::string_view::npos) break;
    p = d + 1;
  }
  if (f.size() < 4 || !f[0].empty()) return false;
  if (f[1] == "6" && f.size() == 4) return base64Of(f[2], 0) && base64Of(f[3], 64);
  if (f[1] != "7" || f.size() != 5 || f[2].empty() || f[2].size() > 9) return false;
  uint64_t n = 0;
  for (char c : f[2]) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + uint64_t(c - '0');
  }
  return n > 0 && base64Of(f[3], 0) && base64Of(f[4], 64);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  PasswordFile pf;
  std::string error;
  const bool parsed = pf.parse(text, "pw", error);

  size_t lines = 0;
  std::vector<std::string> users;
  std::vector<std::string_view> hashes;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = trimmed(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty() || line.front() == '#') continue;
    ++lines;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    users.emplace_back(trimmed(line.substr(0, colon)));
    hashes.push_back(trimmed(line.substr(colon + 1)));
  }
  bool all_good = lines > 0 && users.size() == lines;
  for (size_t i = 0; i < users.size() && all_good; ++i) {
    all_good = !users[i].empty() && wellFormed(hashes[i]);
    for (size_t j = 0; j < i && all_good; ++j) all_good = users[j] != users[i];
  }
  if (parsed ? pf.size() != lines : (pf.size() != 0 || error.empty())) abort();
  if (all_good && !parsed) abort();
  if (!parsed || !cheap(text)) return 0;

  size_t looked_up = 0;
  for (size_t i = 0; i < users.size() && looked_up < 8; ++i) {
    if (users[i].empty() || !wellFormed(hashes[i])) continue;
    ++looked_up;
    const auto r = pf.check(users[i], "secret");
    if (r == PasswordFile::Result::UnknownUser) abort();
    // Ok means one of the user's lines holds a hash of the password.
    if (r == PasswordFile::Result::Ok) {
      bool found = false;
      for (size_t j = 0; j < users.size() && !found; ++j)
        found = users[j] == users[i] && PasswordFile::verify(hashes[j], "secret");
      if (!found) abort();
    }
  }
  static unsigned calls = 0;
  if (++calls % 64 == 0 && pf.check("no\nsuch user", "x") != PasswordFile::Result::UnknownUser)
    abort();
  return 0;
}
