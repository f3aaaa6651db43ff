#include "src/cluster/move_wire.h"

namespace petrel::cluster {

namespace {

constexpr size_t kHeader = 2 + 8 + 8;
constexpr uint8_t kHasSession = 1;
constexpr uint8_t kLast = 2;

void put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xFF);
}
void put32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>(v >> shift & 0xFF);
}
void put64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(v >> shift & 0xFF);
}
void putStr(std::string& out, std::string_view s) {
  put32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// A reader over a message's bytes: any read past the end turns ok false.
struct Reader {
  std::string_view d;
  size_t p = 0;
  bool ok = true;
  bool need(size_t n) {
    if (!ok || d.size() - p < n) ok = false;
    return ok;
  }
  uint64_t uint(int bytes) {
    if (!need(static_cast<size_t>(bytes))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | static_cast<uint8_t>(d[p++]);
    return v;
  }
  std::string_view str() {
    const uint64_t n = uint(4);
    if (!need(n)) return {};
    std::string_view v = d.substr(p, n);
    p += n;
    return v;
  }
  bool done() const { return ok && p == d.size(); }
};

void putHeader(const MoveHeader& h, std::string& out) {
  out.clear();
  out += static_cast<char>(kMoveVersion);
  out += static_cast<char>(h.kind);
  put64(out, h.move);
  put64(out, h.node);
}

}  // namespace

void encodeMoveTake(const MoveHeader& h, const MoveTake& t, std::string& out) {
  putHeader(h, out);
  out += static_cast<char>(t.phase);
  put64(out, t.from);
  putStr(out, t.reply_to);
  putStr(out, t.client_id);
}

void encodeMoveClient(const MoveHeader& h, std::string_view client_id, std::string& out) {
  putHeader(h, out);
  putStr(out, client_id);
}

void encodeMovePart(const MoveHeader& h, const MovePart& p, std::string& out) {
  putHeader(h, out);
  out += static_cast<char>(p.status);
  out += static_cast<char>((p.has_session ? kHasSession : 0) | (p.last ? kLast : 0));
  put64(out, p.next);
  if (p.has_session) {
    putStr(out, persistence::encodeSession(p.session));
    put32(out, static_cast<uint32_t>(p.subscriptions.size()));
    for (const auto& s : p.subscriptions) {
      putStr(out, s.key);
      putStr(out, persistence::encodeSubscription(s));
    }
    put32(out, static_cast<uint32_t>(p.inbound_qos2.size()));
    for (uint16_t id : p.inbound_qos2) put16(out, id);
  }
  put32(out, static_cast<uint32_t>(p.entries.size()));
  for (const MoveEntry& e : p.entries) {
    put64(out, e.queue.seq);
    put64(out, e.node);
    put64(out, e.seq);
    putStr(out, persistence::encodeQueue(e.queue));
    putStr(out, persistence::encodeMessage(e.message));
  }
}

bool decodeMoveHeader(std::string_view data, MoveHeader& h) {
  if (data.size() < kHeader || static_cast<uint8_t>(data[0]) != kMoveVersion) return false;
  const auto kind = static_cast<MoveKind>(data[1]);
  if (kind != MoveKind::Take && kind != MoveKind::Part && kind != MoveKind::Finish && kind != MoveKind::Discard &&
      kind != MoveKind::Resume)
    return false;
  Reader r{data.substr(2)};
  h.kind = kind;
  h.move = r.uint(8);
  h.node = r.uint(8);
  return r.ok;
}

bool decodeMoveTake(std::string_view data, MoveTake& t) {
  if (data.size() < kHeader) return false;
  Reader r{data.substr(kHeader)};
  t.phase = static_cast<uint8_t>(r.uint(1));
  t.from = r.uint(8);
  t.reply_to = std::string(r.str());
  t.client_id = std::string(r.str());
  return r.done() && (t.phase == 1 || t.phase == 2) && !t.reply_to.empty() && !t.client_id.empty();
}

bool decodeMoveClient(std::string_view data, std::string& client_id) {
  if (data.size() < kHeader) return false;
  Reader r{data.substr(kHeader)};
  client_id = std::string(r.str());
  return r.done() && !client_id.empty();
}

bool decodeMovePart(std::string_view data, MovePart& p) {
  if (data.size() < kHeader) return false;
  Reader r{data.substr(kHeader)};
  const uint64_t status = r.uint(1);
  const uint64_t flags = r.uint(1);
  p.next = r.uint(8);
  if (!r.ok || status > static_cast<uint8_t>(MoveStatus::Wait) || (flags & ~uint64_t(kHasSession | kLast)))
    return false;
  p.status = static_cast<MoveStatus>(status);
  p.has_session = flags & kHasSession;
  p.last = flags & kLast;
  p.subscriptions.clear();
  p.inbound_qos2.clear();
  p.entries.clear();
  if (p.has_session) {
    if (!persistence::decodeSession(r.str(), p.session) || !r.ok) return false;
    const uint64_t subs = r.uint(4);
    for (uint64_t i = 0; i < subs && r.ok; ++i) {
      const std::string_view key = r.str();
      const std::string_view rec = r.str();
      persistence::SubscriptionRecord s;
      if (!r.ok || !persistence::decodeSubscription(key, rec, s)) return false;
      p.subscriptions.push_back(std::move(s));
    }
    const uint64_t ids = r.uint(4);
    for (uint64_t i = 0; i < ids && r.ok; ++i) p.inbound_qos2.push_back(static_cast<uint16_t>(r.uint(2)));
  }
  const uint64_t entries = r.uint(4);
  for (uint64_t i = 0; i < entries && r.ok; ++i) {
    MoveEntry e;
    const uint64_t seq = r.uint(8);
    e.node = r.uint(8);
    e.seq = r.uint(8);
    const std::string_view q = r.str();
    const std::string_view m = r.str();
    if (!r.ok || !persistence::decodeQueue(seq, q, e.queue) || !persistence::decodeMessage(m, e.message)) return false;
    p.entries.push_back(std::move(e));
  }
  return r.done();
}

}  // namespace petrel::cluster
