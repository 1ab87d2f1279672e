#include "vector_files.h"

#include <Poco/JSON/Parser.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace holdfast::protocol::testing {
namespace {

Poco::Dynamic::Var Load(const std::string& relative) {
  const std::string path = std::string(HOLDFAST_TEST_VECTORS) + "/" + relative;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot open vector file %s\n", path.c_str());
    std::abort();
  }
  Poco::JSON::Parser parser;
  return parser.parse(in);
}

}  // namespace

Poco::JSON::Object::Ptr LoadObject(const std::string& relative) {
  return Load(relative).extract<Poco::JSON::Object::Ptr>();
}

Poco::JSON::Array::Ptr LoadArray(const std::string& relative) {
  return Load(relative).extract<Poco::JSON::Array::Ptr>();
}

Bytes Hex(const std::string& hex) {
  auto bytes = FromHex(hex);
  if (!bytes) {
    std::fprintf(stderr, "malformed hex in vector: %s\n", hex.c_str());
    std::abort();
  }
  return *bytes;
}

Bytes HexField(const Poco::JSON::Object::Ptr& object, const std::string& key) {
  return Hex(object->getValue<std::string>(key));
}

}  // namespace holdfast::protocol::testing
