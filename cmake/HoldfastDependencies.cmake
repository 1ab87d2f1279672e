# Every dependency of the Holdfast libraries. All come from Debian packages
# (scripts/lib.sh installs them); nothing is fetched. Included by the main
# build and by the standalone fuzzing build in tests/fuzz.
find_package(OpenSSL 3.0 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
# OpenLDAP client library, for directory sign-in (libldap-dev).
pkg_check_modules(LDAP REQUIRED IMPORTED_TARGET ldap lber)
# Argon2id for client key stores and officer passwords (libargon2-dev).
pkg_check_modules(ARGON2 REQUIRED IMPORTED_TARGET libargon2)
find_package(yaml-cpp REQUIRED)
find_package(Protobuf REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(Poco REQUIRED COMPONENTS Foundation Util Net NetSSL Crypto JSON)
find_package(prometheus-cpp REQUIRED COMPONENTS core)
find_package(Threads REQUIRED)
