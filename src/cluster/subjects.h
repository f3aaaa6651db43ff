// src/cluster/subjects.h — MQTT topics and filters as NATS subjects.
//
// A topic "a/b" of cluster "petrel" travels on the subject "petrel.m.a.b".
// Each MQTT level becomes one NATS token, reversibly, whatever it holds:
// NATS gives '.', '*', '>' and white space a meaning and has no empty
// tokens, MQTT allows all of them in a level. The encoding:
//   * the bytes A-Z a-z 0-9 and '-' stand for themselves;
//   * every other byte is '_' and two upper-case hex digits ("a.b" is
//     "a_2Eb", "$SYS" is "_24SYS", "é" is "_C3_A9");
//   * an empty level is "_" alone (no escape is one character long).
// So every token is printable ASCII without '.', '*', '>' or spaces, and
// decoding gives back the exact level.
//
// A filter becomes the subjects a node subscribes to for it: '+' is '*'
// (one token, any), a final '#' is '>' (one or more tokens) and, as MQTT's
// "a/#" also matches "a", the parent's subject as well. NATS's wildcards
// match '$' topics where MQTT's do not ([MQTT-4.7.2-1]): a node matches
// what arrives against its own subscriptions again, so the subjects only
// need to cover the filter, not to equal it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace petrel::cluster {

// The subject of `topic` (a valid topic name) in cluster `name`.
std::string topicSubject(std::string_view name, std::string_view topic);
// The topic of a subject made by topicSubject(); false when `subject` is
// not one (another prefix, a bad escape).
bool subjectTopic(std::string_view name, std::string_view subject, std::string& topic);
// The subjects to subscribe to for `filter` (a valid topic filter, without
// a $share prefix): one, or two for a filter ending in "/#".
std::vector<std::string> filterSubjects(std::string_view name, std::string_view filter);

// The key of `topic` in a key-value bucket (the retained messages): its
// tokens as in its subject, without the prefix ("a/b" is "a.b"). Every
// token is of the characters a key may hold; keyTopic() reverses it.
std::string topicKey(std::string_view topic);
bool keyTopic(std::string_view key, std::string& topic);

// The subject of the nodes' control messages (wire.h): "<name>.c", which
// no topic's subject is.
std::string controlSubject(std::string_view name);
// The subject a node reads the messages that move sessions on
// ("<name>.h.<node token>", move_wire.h).
std::string moveSubject(std::string_view name, std::string_view node_token);

// One level's token, and back (false: not a token encodeLevel makes).
void encodeLevel(std::string_view level, std::string& out);
bool decodeLevel(std::string_view token, std::string& out);

}  // namespace petrel::cluster
