# cmake -DMIGRATIONS_DIR=... -DOUTPUT=... -P embed_migrations.cmake
#
# Writes a C++ source that holds every migrations/NNNN_name.sql as a raw
# string literal, in version order, so installed binaries need no SQL files.
cmake_minimum_required(VERSION 3.25)
file(GLOB files "${MIGRATIONS_DIR}/*.sql")
list(SORT files)
set(delimiter "hf_sql")
set(entries "")
set(seen_versions "")
foreach(path IN LISTS files)
  get_filename_component(name "${path}" NAME_WE)
  if(NOT name MATCHES "^([0-9]+)_[a-z0-9_]+$")
    message(FATAL_ERROR "migration ${path}: name must be NNNN_lower_case.sql")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  if(version IN_LIST seen_versions)
    message(FATAL_ERROR "migration ${path}: version ${version} used twice")
  endif()
  list(APPEND seen_versions ${version})
  file(READ "${path}" sql)
  string(FIND "${sql}" ")${delimiter}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "migration ${path} contains the literal delimiter")
  endif()
  string(APPEND entries
    "    {${version}, \"${name}\", R\"${delimiter}(${sql})${delimiter}\"},\n")
endforeach()
if(entries STREQUAL "")
  message(FATAL_ERROR "no migrations in ${MIGRATIONS_DIR}")
endif()

set(content "// Generated from archive/migrations by embed_migrations.cmake; do not edit.
#include \"migrations.h\"

namespace holdfast::archive::internal {

std::span<const Migration> Migrations() {
  static constexpr Migration kMigrations[] = {
${entries}  };
  return kMigrations;
}

}  // namespace holdfast::archive::internal
")
# Rewrite only on change, so a reconfigure does not force a rebuild.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
  if(old STREQUAL content)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${content}")
