#include "src/metrics/exposition.h"

#include <charconv>
#include <cmath>

#include "src/util/check.h"

namespace petrel {

namespace {
bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

bool Exposition::validName(std::string_view name) {
  if (name.empty() || !(alpha(name[0]) || name[0] == ':')) return false;
  for (char c : name)
    if (!(alpha(c) || digit(c) || c == ':')) return false;
  return true;
}

bool Exposition::validLabelName(std::string_view name) {
  if (name.empty() || !alpha(name[0])) return false;
  for (char c : name)
    if (!(alpha(c) || digit(c))) return false;
  return true;
}

std::string Exposition::number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Plain decimals (0.0001 rather than 1e-04) for all but huge values.
  char buf[400];
  const auto r = std::abs(v) < 1e21 ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                                    : std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  PETREL_CHECK(validName(name));
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  // Help text: backslash and line feed are escaped.
  for (char c : help) {
    if (c == '\\') out_ += "\\\\";
    else if (c == '\n') out_ += "\\n";
    else out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Exposition::labelValue(std::string_view v) {
  // Label values: backslash, double quote and line feed are escaped.
  for (char c : v) {
    if (c == '\\') out_ += "\\\\";
    else if (c == '"') out_ += "\\\"";
    else if (c == '\n') out_ += "\\n";
    else out_ += c;
  }
}

void Exposition::begin(std::string_view name, Labels labels) {
  out_ += name;
  if (labels.size() == 0) {
    out_ += ' ';
    return;
  }
  out_ += '{';
  bool first = true;
  for (const Label& l : labels) {
    PETREL_CHECK(validLabelName(l.first));
    if (!first) out_ += ',';
    first = false;
    out_ += l.first;
    out_ += "=\"";
    labelValue(l.second);
    out_ += '"';
  }
  out_ += "} ";
}

void Exposition::sample(std::string_view name, uint64_t value, Labels labels) {
  begin(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void Exposition::sample(std::string_view name, double value, Labels labels) {
  begin(name, labels);
  out_ += number(value);
  out_ += '\n';
}

void Exposition::histogram(std::string_view name, std::string_view help, const double* bounds,
                           const uint64_t* counts, size_t n, double sum) {
  family(name, "histogram", help);
  const std::string base(name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < n; ++i) {
    cumulative += counts[i];
    const std::string le = number(bounds[i]);
    sample(base + "_bucket", cumulative, {{"le", le}});
  }
  cumulative += counts[n];
  sample(base + "_bucket", cumulative, {{"le", "+Inf"}});
  sample(base + "_sum", sum);
  sample(base + "_count", cumulative);
}

}  // namespace petrel
