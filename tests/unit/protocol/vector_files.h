// Loading JSON test vectors from tests/vectors.
#pragma once

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <string>

#include "holdfast/base/bytes.h"

namespace holdfast::protocol::testing {

// `relative` is a path under tests/vectors. Aborts the test binary if the
// file is missing or not JSON: a vector test must never pass vacuously.
Poco::JSON::Object::Ptr LoadObject(const std::string& relative);
Poco::JSON::Array::Ptr LoadArray(const std::string& relative);

// Hex to bytes; aborts on malformed hex.
Bytes Hex(const std::string& hex);
Bytes HexField(const Poco::JSON::Object::Ptr& object, const std::string& key);

}  // namespace holdfast::protocol::testing
