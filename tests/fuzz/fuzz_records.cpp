// fuzz_records: the LMDB record decoders of persistence/records.h on
// arbitrary bytes (what a corrupt or foreign store would hand them):
// decodeMessage, decodeSession (with its will), decodeSubscription,
// decodeQueue, plus the key helpers.
//
// Whatever decodes must round-trip: encode it, decode that (must succeed),
// and encode again: the two encodings must be identical.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "persistence/records.h"

using namespace petrel::persistence;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  if (MessageRecord m; decodeMessage(in, m)) {
    const std::string e = encodeMessage(m);
    MessageRecord m2;
    if (!decodeMessage(e, m2) || encodeMessage(m2) != e) abort();
    if (m2.topic != m.topic || m2.payload != m.payload || m2.props != m.props) abort();
  }

  if (SessionRecord s; decodeSession(in, s)) {
    const std::string e = encodeSession(s);
    SessionRecord s2;
    if (!decodeSession(e, s2) || encodeSession(s2) != e) abort();
    if (s2.will.has_value() != s.will.has_value() || s2.username != s.username) abort();
  }

  // The subscription's key is the record's LMDB key; take it from the front.
  const size_t klen = size ? data[0] % 8 : 0;
  const std::string_view key = in.substr(0, klen);
  if (SubscriptionRecord r; decodeSubscription(key, in, r)) {
    const std::string e = encodeSubscription(r);
    SubscriptionRecord r2;
    if (!decodeSubscription(r.key, e, r2) || encodeSubscription(r2) != e || r2.key != r.key) abort();
  }

  const uint64_t seq = readU64Key(in);
  if (QueueRecord q; decodeQueue(seq, in, q)) {
    const std::string e = encodeQueue(q);
    QueueRecord q2;
    if (!decodeQueue(q.seq, e, q2) || encodeQueue(q2) != e) abort();
    if (q2.subscription_ids != q.subscription_ids || q2.seq != seq) abort();
  }

  // Keys: big-endian u64 round trip, and a client's key prefix.
  if (readU64Key(u64Key(seq)) != seq) abort();
  const std::string sk = seqKey(key, seq);
  if (sk.size() != key.size() + 9 || readU64Key(std::string_view(sk).substr(key.size() + 1)) != seq)
    abort();
  return 0;
}
