// src/security/password_file.h — user names and password hashes in the format that
// mosquitto_passwd writes, one `user:hash` per line:
//
//   $6$<base64 salt>$<base64 SHA-512(password || salt)>
//   $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt, iterations)>
//
// Lines starting with '#', lines without ':' and hashes in another format
// are skipped (and counted in warnings()); the first entry of a user wins.
// Comparisons are constant-time; an unknown user costs a hash too, so the
// answer time does not tell which user names exist.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace petrel {

class PasswordFile {
 public:
  // Iterations for new $7$ hashes. mosquitto_passwd uses 101; more rounds
  // cost every CONNECT that many HMACs, so this stays modest.
  static constexpr uint32_t kDefaultIterations = 1000;

  // Replaces the entries with those of `path`; on failure the old entries
  // stay and `error` says why.
  bool load(const std::string& path, std::string& error);
  void parse(std::string_view text, const std::string& name);

  enum class Result { Ok, UnknownUser, WrongPassword };
  Result check(std::string_view user, std::string_view password) const;

  size_t size() const { return users_.size(); }
  // One line per skipped entry, e.g. "pw:4: unsupported hash for 'bob'".
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The $7$ encoding of `password` with a fresh random salt.
  static std::string hashPassword(std::string_view password,
                                  uint32_t iterations = kDefaultIterations);
  // Whether `password` matches an encoded $6$ / $7$ hash.
  static bool verify(std::string_view encoded, std::string_view password);

 private:
  struct Hash {
    bool pbkdf2 = false;
    uint32_t iterations = 0;
    std::string salt;
    std::string digest;
  };
  static bool decode(std::string_view encoded, Hash& out);
  static bool matches(const Hash& h, std::string_view password);

  std::unordered_map<std::string, Hash> users_;
  std::vector<std::string> warnings_;
};

}  // namespace petrel
