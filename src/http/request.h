// src/http/request.h — the head of an HTTP/1.1 request (request line and
// header fields, RFC 9112), as the WebSocket handshake and the HTTP
// listener need it: parsed strictly from the bytes received so far, with a
// size limit, no allocation beyond the result; and the response head.
//
// Own code rather than a library: only request heads are parsed (no
// bodies, chunking or pipelining of large requests), and each caller
// already holds the bytes in its own buffer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace petrel::http {

struct Request {
  std::string method;   // "GET"
  std::string target;   // "/mqtt?x=1" as sent
  int minor_version = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent, values trimmed

  // The value of the first field named `name` (case-insensitive); null if
  // there is none.
  const std::string* header(std::string_view name) const;
  // The target without its query string.
  std::string_view path() const;
  // Whether a comma-separated field (Connection, Upgrade,
  // Sec-WebSocket-Protocol) lists `token` (case-insensitive).
  bool headerHasToken(std::string_view name, std::string_view token) const;
};

enum class Parse { Incomplete, Done, Error };

// Parses a request head from the start of `data`. Done: `used` is the
// length of the head (through the empty line). Incomplete: more bytes are
// needed (and `data` is still below `max_head`). Error: `error` says why,
// for the 400 answer (also for a head larger than `max_head`).
Parse parseRequest(std::string_view data, size_t max_head, Request& out, size_t& used, std::string& error);

// "HTTP/1.1 <status> <reason>\r\n" with the given header lines (each
// "Name: value", without CRLF), Content-Length when `body` is given, the
// empty line and the body.
std::string response(int status, std::string_view reason, const std::vector<std::string>& headers,
                     std::string_view body = {}, bool with_length = true);

bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace petrel::http
