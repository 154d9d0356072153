#pragma once
// CSV / TSV text as rows of fields, per RFC 4180: a field that starts with a
// double quote runs to the matching quote ("" inside is one quote) and may
// hold separators and line breaks; elsewhere quotes are plain characters (as
// pandas reads open_clip's TSV files). Lines end in \n or \r\n; blank lines
// are dropped; a UTF-8 byte-order mark at the start is ignored.
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

struct DelimitedRow {
  int64_t line = 0;  // 1-based line where the row starts, for messages
  std::vector<std::string> fields;
};

// `path` only names the file in errors (an unterminated quote, text after a
// closing quote).
std::vector<DelimitedRow> parse_delimited(const std::string& text, char separator, const std::string& path);

}  // namespace fm::data
