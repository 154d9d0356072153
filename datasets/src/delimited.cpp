#include "delimited.h"

#include "fm/error.h"

namespace fm::data {

std::vector<DelimitedRow> parse_delimited(const std::string& text, char separator, const std::string& path) {
  std::vector<DelimitedRow> rows;
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  int64_t line = 1;
  const size_t n = text.size();
  while (i < n) {
    DelimitedRow row;
    row.line = line;
    for (;;) {  // one field per turn
      std::string field;
      if (i < n && text[i] == '"') {
        const int64_t opened = line;
        for (++i;; ++i) {
          if (i >= n) error(path, ":", opened, ": a quoted field is not closed");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              ++i;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i];
        }
        if (i < n && text[i] != separator && text[i] != '\n' && !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n'))
          error(path, ":", line, ": unexpected text after a closing quote");
      } else {
        while (i < n && text[i] != separator && text[i] != '\n') field += text[i++];
        if (!field.empty() && field.back() == '\r' && (i >= n || text[i] == '\n')) field.pop_back();
      }
      row.fields.push_back(std::move(field));
      if (i < n && text[i] == separator) {
        ++i;
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i, ++line;
      break;
    }
    if (!(row.fields.size() == 1 && row.fields[0].empty())) rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace fm::data
