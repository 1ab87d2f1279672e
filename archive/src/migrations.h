// The schema migrations compiled into the library (see cmake/embed_migrations.cmake).
#pragma once

#include <span>
#include <string_view>

namespace holdfast::archive::internal {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// In ascending version order.
std::span<const Migration> Migrations();

}  // namespace holdfast::archive::internal
