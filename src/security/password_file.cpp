// src/security/password_file.cpp — reading mosquitto_passwd files and checking
// passwords against their $6$ / $7$ hashes.
#include "src/security/password_file.h"
#include "src/util/text.h"

#include <fstream>
#include <functional>
#include <sstream>

#include "tls/crypto.h"

namespace petrel {

namespace {

constexpr size_t kSaltBytes = 12;    // what mosquitto_passwd uses
constexpr size_t kDigestBytes = 64;  // SHA-512

}  // namespace

bool PasswordFile::decode(std::string_view encoded, Hash& out) {
  const auto f = split(encoded, '$');
  // f[0] is the empty string before the leading '$'.
  if (f.size() < 4 || !f[0].empty()) return false;
  if (f[1] == "6" && f.size() == 4) {
    out.pbkdf2 = false;
    out.iterations = 0;
    if (!tls::base64Decode(f[2], out.salt) || !tls::base64Decode(f[3], out.digest)) return false;
  } else if (f[1] == "7" && f.size() == 5) {
    out.pbkdf2 = true;
    uint64_t n = 0;
    if (f[2].empty() || f[2].size() > 9) return false;
    for (char c : f[2]) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + uint64_t(c - '0');
    }
    if (n == 0) return false;
    out.iterations = static_cast<uint32_t>(n);
    if (!tls::base64Decode(f[3], out.salt) || !tls::base64Decode(f[4], out.digest)) return false;
  } else {
    return false;
  }
  return !out.salt.empty() && out.digest.size() == kDigestBytes;
}

bool PasswordFile::matches(const Hash& h, std::string_view password) {
  const std::string computed = h.pbkdf2 ? tls::pbkdf2Sha512(password, h.salt, h.iterations, kDigestBytes)
                                        : tls::sha512(password, h.salt);
  return !computed.empty() && tls::constantTimeEqual(computed, h.digest);
}

bool PasswordFile::verify(std::string_view encoded, std::string_view password) {
  Hash h;
  return decode(encoded, h) && matches(h, password);
}

std::string PasswordFile::hashPassword(std::string_view password, uint32_t iterations) {
  const std::string salt = tls::randomBytes(kSaltBytes);
  if (salt.empty()) return {};
  const std::string digest = tls::pbkdf2Sha512(password, salt, iterations, kDigestBytes);
  if (digest.empty()) return {};
  return "$7$" + std::to_string(iterations) + "$" + tls::base64Encode(salt) + "$" +
         tls::base64Encode(digest);
}

bool PasswordFile::load(const std::string& path, std::string& error) {
  const auto text = readFile(path);
  if (!text) {
    error = path + ": cannot open the password file";
    return false;
  }
  return parse(*text, path, error);
}

bool PasswordFile::parse(std::string_view text, const std::string& name, std::string& error) {
  std::unordered_map<std::string, Hash> users;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const size_t colon = line.find(':');
    const std::string where = name + ":" + std::to_string(line_no) + ": ";
    if (colon == std::string_view::npos) {
      error = where + "not a 'user:hash' line";
      return false;
    }
    const std::string user(trim(line.substr(0, colon)));
    const std::string_view encoded = trim(line.substr(colon + 1));
    if (user.empty()) {
      error = where + "empty user name";
      return false;
    }
    Hash h;
    if (!decode(encoded, h)) {
      // The user name is the operator's own text; the hash is not shown.
      error = where + "user '" + user + "': not a $6$ or $7$ hash";
      return false;
    }
    if (!users.emplace(user, std::move(h)).second) {
      error = where + "user '" + user + "' appears twice";
      return false;
    }
  }
  if (users.empty()) {
    error = name + ": no users (an empty password file would refuse every client)";
    return false;
  }
  // One dummy per distinct cost in the file, with a random salt and
  // digest, weighted by how many users have that cost.
  std::vector<Hash> dummies;
  std::vector<size_t> weights;
  for (const auto& e : users) {
    const Hash& h = e.second;
    size_t i = 0;
    while (i < dummies.size() && !(dummies[i].pbkdf2 == h.pbkdf2 && dummies[i].iterations == h.iterations)) ++i;
    if (i < dummies.size()) {
      ++weights[i];
      continue;
    }
    Hash d;
    d.pbkdf2 = h.pbkdf2;
    d.iterations = h.iterations;
    d.salt = tls::randomBytes(h.salt.size());
    d.digest = tls::randomBytes(kDigestBytes);
    dummies.push_back(std::move(d));
    weights.push_back(1);
  }
  users_ = std::move(users);
  dummies_ = std::move(dummies);
  dummy_weights_ = std::move(weights);
  return true;
}

const PasswordFile::Hash& PasswordFile::dummyFor(std::string_view user) const {
  // The same cost for the same unknown name every time (timing one name
  // twice shows nothing), drawn from the costs of the file's users in
  // their proportions: an unknown name costs what a real user's check
  // costs, as often as real users cost it.
  size_t pick = std::hash<std::string_view>{}(user) % users_.size();
  for (size_t i = 0; i < dummies_.size(); ++i) {
    if (pick < dummy_weights_[i]) return dummies_[i];
    pick -= dummy_weights_[i];
  }
  return dummies_.back();
}

PasswordFile::Result PasswordFile::check(std::string_view user, std::string_view password) const {
  auto it = users_.find(std::string(user));
  if (it == users_.end()) {
    if (!dummies_.empty()) (void)matches(dummyFor(user), password);
    return Result::UnknownUser;
  }
  return matches(it->second, password) ? Result::Ok : Result::WrongPassword;
}

}  // namespace petrel
