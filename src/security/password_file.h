// src/security/password_file.h — user names and password hashes in the format that
// mosquitto_passwd writes, one `user:hash` per line:
//
//   $6$<base64 salt>$<base64 SHA-512(password || salt)>
//   $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt, iterations)>
//
// Blank lines and lines starting with '#' are ignored. Anything else that
// is not a `user:hash` line with a $6$ / $7$ hash, a user named twice, or a
// file without any user refuses the whole file (with its name and line):
// a broken file never replaces a good one, and never starts the broker.
// Comparisons are constant-time; an unknown user costs a hash with the
// parameters of one of the file's own entries (picked by the user name,
// in the proportions of the file's costs), so the answer time does not
// tell which user names exist.
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
  // stay and `error` says why ("<path>:<line>: ...").
  bool load(const std::string& path, std::string& error);
  // The same from text; `name` is the file name for messages.
  bool parse(std::string_view text, const std::string& name, std::string& error);

  enum class Result { Ok, UnknownUser, WrongPassword };
  Result check(std::string_view user, std::string_view password) const;

  size_t size() const { return users_.size(); }

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

  // What an unknown user is checked against: one entry per distinct cost
  // (kind and iterations) in the file, with a salt and digest of its own.
  const Hash& dummyFor(std::string_view user) const;

  std::unordered_map<std::string, Hash> users_;
  std::vector<Hash> dummies_;
  std::vector<size_t> dummy_weights_;  // users per dummy's cost
};

}  // namespace petrel
