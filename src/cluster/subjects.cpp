#include "src/cluster/subjects.h"

namespace petrel::cluster {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool plain(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is never written: a token has one spelling
}

// "<name>.m"
void prefix(std::string_view name, std::string& out) {
  out.append(name);
  out += ".m";
}

}  // namespace

void encodeLevel(std::string_view level, std::string& out) {
  if (level.empty()) {
    out += '_';
    return;
  }
  for (char ch : level) {
    const auto c = static_cast<unsigned char>(ch);
    if (plain(c)) {
      out += ch;
    } else {
      out += '_';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
}

bool decodeLevel(std::string_view token, std::string& out) {
  if (token == "_") return true;  // the empty level
  if (token.empty()) return false;
  for (size_t i = 0; i < token.size(); ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (plain(c)) {
      out += token[i];
      continue;
    }
    if (c != '_' || i + 2 >= token.size()) return false;
    const int hi = hexValue(token[i + 1]), lo = hexValue(token[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const auto byte = static_cast<unsigned char>(hi << 4 | lo);
    if (plain(byte)) return false;  // never escaped: another spelling of a plain byte
    out += static_cast<char>(byte);
    i += 2;
  }
  return true;
}

std::string moveSubject(std::string_view name, std::string_view node_token) {
  std::string s(name);
  s += ".h.";
  s += node_token;
  return s;
}

std::string controlSubject(std::string_view name) { return std::string(name) + ".c"; }

namespace {

// The topic's levels as tokens, joined by '.'.
void appendTokens(std::string_view topic, std::string& out) {
  size_t pos = 0;
  while (true) {
    const size_t end = topic.find('/', pos);
    encodeLevel(topic.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos), out);
    if (end == std::string_view::npos) return;
    out += '.';
    pos = end + 1;
  }
}

// The reverse of appendTokens() (`topic` is cleared first).
bool parseTokens(std::string_view tokens, std::string& topic) {
  topic.clear();
  size_t pos = 0;
  while (true) {
    const size_t end = tokens.find('.', pos);
    const std::string_view token =
        tokens.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (!decodeLevel(token, topic)) return false;
    if (end == std::string_view::npos) return true;
    topic += '/';
    pos = end + 1;
  }
}

}  // namespace

std::string topicSubject(std::string_view name, std::string_view topic) {
  std::string s;
  s.reserve(name.size() + 3 + topic.size() + topic.size() / 4);
  prefix(name, s);
  s += '.';
  appendTokens(topic, s);
  return s;
}

bool subjectTopic(std::string_view name, std::string_view subject, std::string& topic) {
  topic.clear();
  std::string p;
  prefix(name, p);
  p += '.';
  if (subject.size() <= p.size() || subject.substr(0, p.size()) != p) return false;
  return parseTokens(subject.substr(p.size()), topic);
}

std::string topicKey(std::string_view topic) {
  std::string k;
  k.reserve(topic.size() + topic.size() / 4);
  appendTokens(topic, k);
  return k;
}

bool keyTopic(std::string_view key, std::string& topic) { return parseTokens(key, topic); }

std::vector<std::string> filterSubjects(std::string_view name, std::string_view filter) {
  std::string s;
  prefix(name, s);
  std::string parent;  // for a final "/#": the subject without its last token
  size_t pos = 0;
  while (true) {
    const size_t end = filter.find('/', pos);
    const std::string_view level =
        filter.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (level == "#" && pos > 0) parent = s;
    s += '.';
    if (level == "+") s += '*';
    else if (level == "#") s += '>';
    else encodeLevel(level, s);
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  std::vector<std::string> out{std::move(s)};
  if (!parent.empty()) out.push_back(std::move(parent));
  return out;
}

}  // namespace petrel::cluster
