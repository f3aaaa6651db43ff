#include "src/http/request.h"

namespace petrel::http {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

// RFC 9110 §5.6.2 token characters.
bool tokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

const std::string* Request::header(std::string_view name) const {
  for (const auto& h : headers)
    if (equalsIgnoreCase(h.first, name)) return &h.second;
  return nullptr;
}

std::string_view Request::path() const {
  std::string_view t = target;
  const size_t q = t.find('?');
  return q == std::string_view::npos ? t : t.substr(0, q);
}

bool Request::headerHasToken(std::string_view name, std::string_view token) const {
  for (const auto& h : headers) {
    if (!equalsIgnoreCase(h.first, name)) continue;
    std::string_view v = h.second;
    while (!v.empty()) {
      const size_t comma = v.find(',');
      if (equalsIgnoreCase(trim(v.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

Parse parseRequest(std::string_view data, size_t max_head, Request& out, size_t& used, std::string& error) {
  // The head ends at the first empty line; nothing is parsed before it is
  // all here (heads are small, and a slow client just waits).
  // A request line is printable ASCII: anything else (an MQTT CONNECT on
  // this port, TLS to a plain listener) is refused at its first bytes.
  const size_t eol = data.find("\r\n");
  const std::string_view first = data.substr(0, eol == std::string_view::npos ? data.size() : eol);
  for (size_t i = 0; i < first.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(first[i]);
    const bool cr_at_end = c == '\r' && i + 1 == data.size();  // its LF is on the way
    if ((c < 0x20 || c >= 0x7F) && !cr_at_end) {
      error = "not an HTTP request";
      return Parse::Error;
    }
  }
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() >= max_head) {
      error = "request head larger than " + std::to_string(max_head) + " bytes";
      return Parse::Error;
    }
    return Parse::Incomplete;
  }
  if (end + 4 > max_head) {
    error = "request head larger than " + std::to_string(max_head) + " bytes";
    return Parse::Error;
  }
  std::string_view head = data.substr(0, end + 2);  // each line ends with CRLF
  auto nextLine = [&head](std::string_view& line) {
    const size_t eol = head.find("\r\n");
    line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
  };
  std::string_view line;
  nextLine(line);
  // request-line = method SP request-target SP HTTP-version
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    error = "malformed request line";
    return Parse::Error;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty()) {
    error = "malformed request line";
    return Parse::Error;
  }
  for (char c : method)
    if (!tokenChar(c)) {
      error = "malformed method";
      return Parse::Error;
    }
  if (target.empty() || target[0] != '/') {
    error = "the request target must be an absolute path";
    return Parse::Error;
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      error = "control character in the request target";
      return Parse::Error;
    }
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9') {
    error = "not HTTP/1.x";
    return Parse::Error;
  }
  out.method.assign(method);
  out.target.assign(target);
  out.minor_version = version[7] - '0';
  out.headers.clear();
  while (!head.empty()) {
    nextLine(line);
    // field-line = field-name ":" OWS field-value OWS; no obsolete folding.
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error = "malformed header field";
      return Parse::Error;
    }
    const std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!tokenChar(c)) {
        error = "malformed header field name";
        return Parse::Error;
      }
    const std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7F) {
        error = "control character in a header field";
        return Parse::Error;
      }
    out.headers.emplace_back(std::string(name), std::string(value));
  }
  used = end + 4;
  return Parse::Done;
}

std::string response(int status, std::string_view reason, const std::vector<std::string>& headers,
                     std::string_view body, bool with_length) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " ";
  r.append(reason);
  r += "\r\n";
  for (const auto& h : headers) {
    r += h;
    r += "\r\n";
  }
  if (with_length) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "\r\n";
  r.append(body);
  return r;
}

}  // namespace petrel::http
