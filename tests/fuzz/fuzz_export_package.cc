// VerifyPackage (archive/export_package.h) on fuzzed package directories:
// an export package reaches an auditor's machine as files anyone could have
// edited, so its checker is a decoder of untrusted input.
//
// The input is split at lines "--8<--": the first part is manifest.json,
// the second manifest.sig, each further part a file named after its first
// line (written only if the name is a plain relative path) with the rest as
// its content. Beyond "no crash", the checker must never call a package
// intact under a pinned org root key whose private half no input has: no
// fuzzed bytes can carry a valid signature by it.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "holdfast/archive/export_package.h"
#include "holdfast/base/bytes.h"

namespace {

namespace fs = std::filesystem;

void Check(bool condition) {
  if (!condition) std::abort();
}

// The pinned org root key: the uncompressed P-256 point 2G. Its private
// scalar is known (2), but making a valid signature needs an ECDSA signing
// computation over the fuzzed manifest, which the fuzzer cannot perform:
// it can only guess the 64 signature bytes.
const holdfast::Bytes& PinnedKey() {
  static const holdfast::Bytes key = *holdfast::FromHex(
      "047cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978"
      "07775510db8ed040293d9ac69f7430dbba7dade63ce982299e04b79d227873d1");
  return key;
}

std::vector<std::string_view> Split(std::string_view input) {
  std::vector<std::string_view> parts;
  constexpr std::string_view kCut = "\n--8<--\n";
  for (;;) {
    size_t at = input.find(kCut);
    if (at == std::string_view::npos) {
      parts.push_back(input);
      return parts;
    }
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + kCut.size());
  }
}

void Write(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::vector<std::string_view> parts =
      Split(std::string_view(reinterpret_cast<const char*>(data), size));
  char tmpl[] = "/tmp/holdfast-fuzz-package-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 0;
  const fs::path dir(tmpl);
  Write(dir / "manifest.json", parts[0]);
  if (parts.size() > 1) Write(dir / "manifest.sig", parts[1]);
  for (size_t i = 2; i < parts.size() && i < 10; ++i) {
    std::string_view part = parts[i];
    const size_t newline = part.find('\n');
    const std::string name(part.substr(0, newline));
    const std::string_view content = newline == std::string_view::npos ? "" : part.substr(newline + 1);
    if (!holdfast::archive::IsSafePackageName(name) || name.find('/') != std::string::npos) continue;
    Write(dir / name, content);
  }
  auto pinned = holdfast::archive::VerifyPackage(dir.string(), PinnedKey());
  if (pinned.ok()) Check(!pinned->intact());
  auto unpinned = holdfast::archive::VerifyPackage(dir.string(), {});
  (void)unpinned;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
