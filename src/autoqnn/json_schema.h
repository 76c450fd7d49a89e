// A small JSON-Schema validator (draft-07 keywords, the subset configs/policy.schema.json uses) so that
// tests and `autoqnn policy check` can validate documents without Python.
//
// Supported: type (string or array; "integer" = a JSON number without fraction), enum, const, required,
// properties, additionalProperties (bool or schema), propertyNames, items (one schema), minItems,
// maxItems, minLength, pattern (std::regex ECMAScript, unanchored search as JSON Schema specifies),
// minimum, maximum, exclusiveMinimum, exclusiveMaximum, anyOf, $ref to "#/definitions/..." or
// "#/$defs/...". Annotations ($schema, $id, $comment, title, description, default, examples, definitions,
// $defs) are ignored. Any other keyword is rejected when the schema is loaded, so a schema never
// silently asks for a check that is not made.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

namespace autoqnn {

struct SchemaViolation {
  std::string path;     // JSON pointer of the offending value in the document ("" = root)
  std::string message;  // what is wrong
};

struct SchemaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class JsonSchema {
 public:
  // Throws SchemaError for an unsupported keyword, a bad $ref or an invalid regex.
  explicit JsonSchema(nlohmann::json schema);
  static JsonSchema load(const std::string& path);  // throws naming the file

  // Every violation found (stops after max_errors).
  std::vector<SchemaViolation> validate(const nlohmann::json& doc, size_t max_errors = 50) const;
  // Throws SchemaError("<what>: schema violation(s): /path: message; ...") when invalid.
  void check(const nlohmann::json& doc, const std::string& what) const;

 private:
  void compile(const nlohmann::json& s, const std::string& where);
  const nlohmann::json& resolve(const std::string& ref) const;
  void walk(const nlohmann::json& s, const nlohmann::json& v, const std::string& path,
            std::vector<SchemaViolation>& out, size_t max_errors, int depth) const;

  nlohmann::json root_;
  std::map<std::string, std::regex> regex_;  // compiled patterns by source text
};

}  // namespace autoqnn
