// The derived files of an export package and its offline check, on a
// package built by hand in a temporary directory: no database, no HSM.
#include "holdfast/archive/export_package.h"

#include <sys/stat.h>
#include <unistd.h>

#include <Poco/Base64Decoder.h>
#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "holdfast/base/bytes.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "holdfast/testing/p256_key.h"

namespace holdfast::archive {
namespace {

namespace fs = std::filesystem;
using holdfast::testing::P256Key;

// ------------------------------------------------------------ helpers

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hf-package-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const fs::path& p, std::string_view content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

std::vector<std::string> Split(std::string_view s, std::string_view sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    if (at == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, at - start));
    start = at + sep.size();
  }
}

std::string Base64Decode(const std::string& text) {
  std::istringstream in(text);
  Poco::Base64Decoder decoder(in);
  std::string out;
  char c;
  while (decoder.get(c)) out.push_back(c);
  return out;
}

// RFC 2047 words as EncodedWords writes them (B encoding, UTF-8), with the
// white space between adjacent words dropped; plain text is returned as is.
std::string DecodeHeader(const std::string& value) {
  if (value.rfind("=?utf-8?B?", 0) != 0) return value;
  std::string out;
  size_t at = 0;
  while ((at = value.find("=?utf-8?B?", at)) != std::string::npos) {
    const size_t end = value.find("?=", at + 10);
    out += Base64Decode(value.substr(at + 10, end - at - 10));
    at = end + 2;
  }
  return out;
}

std::string DecodeQuotedPrintable(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      out.push_back(text[i]);
    } else if (text.compare(i, 3, "=\r\n") == 0) {
      i += 2;
    } else {
      out.push_back(static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    }
  }
  return out;
}

// A header block with CRLF line ends, unfolded: every field once per name
// unless it repeats (then the values are in order).
struct Headers {
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : fields) {
      if (n == name) out.push_back(v);
    }
    return out;
  }
  std::string One(const std::string& name) const {
    auto all = All(name);
    EXPECT_EQ(all.size(), 1u) << name;
    return all.empty() ? "" : all[0];
  }
  std::set<std::string> Names() const {
    std::set<std::string> out;
    for (const auto& f : fields) out.insert(f.first);
    return out;
  }
};

Headers ParseHeaders(const std::string& block) {
  Headers h;
  for (const std::string& line : Split(block, "\r\n")) {
    if (line.empty()) continue;
    if (line[0] == ' ' || line[0] == '\t') {
      EXPECT_FALSE(h.fields.empty());
      if (!h.fields.empty()) h.fields.back().second += line.substr(1);
      continue;
    }
    const size_t colon = line.find(": ");
    EXPECT_NE(colon, std::string::npos) << line;
    if (colon == std::string::npos) continue;
    h.fields.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  return h;
}

// Every '\n' has a '\r' before it, and every '\r' a '\n' after it.
bool OnlyCrlf(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
  }
  return true;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// ------------------------------------------------------------ the package

struct Line {
  int64_t envelope_id;
  std::string conversation_id;
  std::string sender;
  std::string sent_at;
  bool signature_valid;
  std::optional<std::string> text;
  std::string error;
  std::optional<std::vector<std::string>> recipients;
  std::string kind;
};

const std::string kEvilConversation = "../../etc/passwd\r\nX-Evil: 1";
const std::string kEvilSender = "mallory\r\nBcc: victim@example.com";
const std::string kEvilRecipient = "bob\r\nSubject: pwned";
const std::string kScript = "Hello <b>bob</b> & <script>alert(1)</script> \"quoted\" 'single'";
const std::string kTricky =
    "Line1\r\nLine2\nthorn \xc3\xbe and delimiter \x14 and \xc2\xae, Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x98\x80 =3D "
    "trailing space \n--=_holdfast_digest_0123456789abcdef--\n.\nFrom here\n" + std::string(200, 'x');
const std::string kImgError = "archive capsule mismatch: <img src=x onerror=alert(1)>";
const std::string kLegalReference = "<b>SEC 2026-17</b>\r\nX-Injected: yes";

std::vector<Line> Lines() {
  return {
      {1, "c_plain", "alice", "2026-11-26T15:41:59.123Z", true, kScript, "", std::vector<std::string>{"bob"},
       "direct"},
      {2, kEvilConversation, kEvilSender, "2026-11-26T15:42:00.000Z", false, kTricky,
       "signature does not verify", std::vector<std::string>{"alice", kEvilRecipient}, "group"},
      {3, kEvilConversation, "alice", "2026-11-26T15:43:00.000Z", true, std::nullopt, kImgError,
       std::vector<std::string>{kEvilSender, kEvilRecipient}, "group"},
      {4, "c_old", "carol", "2026-11-27T09:00:00.000Z", true, "old package line", "", std::nullopt, ""},
      {5, "Projekt \xc3\x9c" "bernahme/..", "alice", "not a time", true, "", "", std::vector<std::string>{},
       "group"},
      {6, "c_plain", "bob", "2026-11-26T15:44:00.000Z", true, "reply", "", std::vector<std::string>{"alice"},
       "direct"},
  };
}

std::string MessageId(int64_t envelope_id) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%032llx", static_cast<long long>(envelope_id) * 0x1111);
  return buf;
}

std::string Jsonl(const std::vector<Line>& lines) {
  std::string out;
  for (const Line& l : lines) {
    Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
    o.set("envelope_id", l.envelope_id);
    o.set("message_id", MessageId(l.envelope_id));
    o.set("conversation_id", l.conversation_id);
    o.set("sender_user", l.sender);
    o.set("sender_device", std::string(32, 'd'));
    o.set("sent_at", l.sent_at);
    o.set("epoch_id", 3);
    o.set("signature_valid", l.signature_valid);
    if (l.text) {
      o.set("text", *l.text);
    } else {
      o.set("text", Poco::Dynamic::Var());
    }
    if (!l.error.empty()) o.set("error", l.error);
    if (l.recipients) {
      Poco::JSON::Array::Ptr a = new Poco::JSON::Array;
      for (const auto& r : *l.recipients) a->add(r);
      o.set("recipients", a);
    }
    if (!l.kind.empty()) o.set("conversation_kind", l.kind);
    std::ostringstream s;
    o.stringify(s);
    EXPECT_EQ(s.str().find('\n'), std::string::npos);
    out += s.str() + "\n";
  }
  return out;
}

PackageContext Context() {
  PackageContext ctx;
  ctx.request_id = 7;
  ctx.case_id = 3;
  ctx.purpose = "legal_hold_export";
  ctx.legal_reference = kLegalReference;
  ctx.org = "Acme <Bank>";
  ctx.created_at_ms = 1'795'000'000'000;
  return ctx;
}

PackageFileInfo Describe(const fs::path& dir, const std::string& name) {
  const std::string content = Read(dir / name);
  return {name, ToHex(protocol::Sha256(AsBytes(content))), content.size()};
}

std::string ManifestJson(const std::vector<PackageFileInfo>& files, ByteView org_root, int64_t message_count) {
  Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
  o.set("format", "holdfast-export/1");
  o.set("request_id", 7);
  o.set("case_id", 3);
  o.set("message_count", message_count);
  Poco::JSON::Array::Ptr a = new Poco::JSON::Array;
  for (const auto& f : files) {
    Poco::JSON::Object::Ptr item = new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
    item->set("name", f.name);
    item->set("sha256", f.sha256);
    item->set("bytes", static_cast<Poco::Int64>(f.bytes));
    a->add(item);
  }
  o.set("files", a);
  o.set("org_root_public_key", ToHex(org_root));
  std::ostringstream s;
  o.stringify(s);
  return s.str() + "\n";
}

// Writes manifest.json and manifest.sig the way RunExport does: the
// signature over kManifestSig || manifest bytes, hex and a newline.
void Sign(const fs::path& dir, const std::string& manifest, const P256Key& key) {
  Write(dir / "manifest.json", manifest);
  Write(dir / "manifest.sig",
        ToHex(key.Sign(Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest)}))) + "\n");
}

class ExportPackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "request-7";
    fs::create_directory(dir_);
    Write(dir_ / "messages.jsonl", Jsonl(Lines()));
    auto written = WriteDerivedFiles(dir_.string(), Context());
    ASSERT_TRUE(written.ok()) << written.status().ToString();
    derived_ = *written;
    files_ = {Describe(dir_, "messages.jsonl")};
    files_.insert(files_.end(), derived_.begin(), derived_.end());
    Sign(dir_, ManifestJson(files_, root_.public_key(), 6), root_);
  }

  // The package copied to a fresh directory, to be tampered with.
  fs::path Copy() {
    const fs::path copy = tmp_.path() / ("copy-" + std::to_string(++copies_));
    fs::copy(dir_, copy, fs::copy_options::recursive);
    return copy;
  }

  std::string Eml(const std::string& conversation_id) {
    return Read(dir_ / ("conversations/" + ConversationFileStem(conversation_id) + ".eml"));
  }
  std::string HtmlOf(const std::string& conversation_id) {
    return Read(dir_ / ("conversations/" + ConversationFileStem(conversation_id) + ".html"));
  }

  static std::string Problems(const PackageVerifyReport& r) {
    std::string out;
    for (const auto& p : r.problems) out += "  " + p + "\n";
    return out;
  }
  // VerifyPackage reads `dir`, finds it not intact, and a problem line
  // contains each of `needles`.
  static void ExpectProblems(const fs::path& dir, ByteView pinned, const std::vector<std::string>& needles) {
    auto r = VerifyPackage(dir.string(), pinned);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->intact());
    for (const std::string& needle : needles) {
      EXPECT_TRUE(std::any_of(r->problems.begin(), r->problems.end(),
                              [&](const std::string& p) { return p.find(needle) != std::string::npos; }))
          << "no problem mentions \"" << needle << "\"; the problems:\n" << Problems(*r);
    }
  }

  TempDir tmp_;
  fs::path dir_;
  P256Key root_;
  P256Key other_;
  std::vector<PackageFileInfo> derived_;
  std::vector<PackageFileInfo> files_;
  int copies_ = 0;
};

// ------------------------------------------------------------ derived files

TEST_F(ExportPackageTest, WritesTwoFilesPerConversationAndALoadFileSortedHashedAndPrivate) {
  std::set<std::string> conversations;
  for (const Line& l : Lines()) conversations.insert(l.conversation_id);
  ASSERT_EQ(derived_.size(), 2 * conversations.size() + 1);
  EXPECT_TRUE(std::is_sorted(derived_.begin(), derived_.end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
  std::set<std::string> names;
  for (const PackageFileInfo& f : derived_) {
    names.insert(f.name);
    EXPECT_TRUE(IsSafePackageName(f.name)) << f.name;
    const PackageFileInfo actual = Describe(dir_, f.name);
    EXPECT_EQ(f.sha256, actual.sha256) << f.name;
    EXPECT_EQ(f.bytes, actual.bytes) << f.name;
    struct stat st{};
    ASSERT_EQ(::lstat((dir_ / f.name).c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f.name;
  }
  EXPECT_TRUE(names.count("loadfile.dat"));
  for (const std::string& id : conversations) {
    const std::string stem = ConversationFileStem(id);
    EXPECT_EQ(stem.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"),
              std::string::npos)
        << stem;
    EXPECT_TRUE(names.count("conversations/" + stem + ".eml")) << stem;
    EXPECT_TRUE(names.count("conversations/" + stem + ".html")) << stem;
  }
  // Nothing was written outside the package (the "../" conversation).
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp_.path()), fs::directory_iterator()), 1);
  EXPECT_EQ(ConversationFileStem("c_plain").substr(0, 8), "c_plain-");
  EXPECT_NE(ConversationFileStem("a/b"), ConversationFileStem("a_b"));
}

TEST_F(ExportPackageTest, NeverOverwrites) {
  auto again = WriteDerivedFiles(dir_.string(), Context());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
}

TEST_F(ExportPackageTest, RefusesALineThatIsNotAMessage) {
  const fs::path other = tmp_.path() / "bad";
  fs::create_directory(other);
  Write(other / "messages.jsonl", Jsonl({Lines()[0]}) + "[1,2]\n");
  auto r = WriteDerivedFiles(other.string(), Context());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status().message();
}

TEST_F(ExportPackageTest, EmlIsADigestOfOneMessagePerLineWithHeadersNoValueCanInjectInto) {
  const std::vector<Line> lines = Lines();
  const std::set<std::string> outer_allowed = {
      "From", "To", "Date", "Subject", "Message-ID", "MIME-Version", "X-Holdfast-Org", "X-Holdfast-Request-Id",
      "X-Holdfast-Case-Id", "X-Holdfast-Purpose", "X-Holdfast-Legal-Reference", "X-Holdfast-Conversation",
      "X-Holdfast-Conversation-Kind", "X-Holdfast-Message-Count", "Content-Type"};
  const std::set<std::string> inner_allowed = {
      "From", "To", "Date", "Subject", "Message-ID", "MIME-Version", "X-Holdfast-Envelope-Id",
      "X-Holdfast-Conversation", "X-Holdfast-Conversation-Kind", "X-Holdfast-Sender", "X-Holdfast-Sender-Device",
      "X-Holdfast-Sent-At", "X-Holdfast-Epoch", "X-Holdfast-Signature", "X-Holdfast-Opened", "X-Holdfast-Error",
      "Content-Type", "Content-Transfer-Encoding"};
  std::set<std::string> ids;
  for (const Line& l : lines) ids.insert(l.conversation_id);
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    std::vector<const Line*> mine;
    for (const Line& l : lines) {
      if (l.conversation_id == id) mine.push_back(&l);
    }
    const std::string eml = Eml(id);
    ASSERT_TRUE(OnlyCrlf(eml));
    for (const std::string& line : Split(eml, "\r\n")) EXPECT_LE(line.size(), 998u);
    const size_t blank = eml.find("\r\n\r\n");
    ASSERT_NE(blank, std::string::npos);
    const Headers outer = ParseHeaders(eml.substr(0, blank));
    for (const std::string& name : outer.Names()) EXPECT_TRUE(outer_allowed.count(name)) << name;
    EXPECT_EQ(DecodeHeader(outer.One("X-Holdfast-Conversation")), id);
    EXPECT_EQ(DecodeHeader(outer.One("X-Holdfast-Legal-Reference")), kLegalReference);
    EXPECT_EQ(outer.One("X-Holdfast-Request-Id"), "7");
    EXPECT_EQ(outer.One("X-Holdfast-Message-Count"), std::to_string(mine.size()));
    const std::string type = outer.One("Content-Type");
    const std::string prefix = "multipart/digest; boundary=\"";
    ASSERT_EQ(type.rfind(prefix, 0), 0u) << type;
    const std::string boundary = type.substr(prefix.size(), type.size() - prefix.size() - 1);
    ASSERT_FALSE(boundary.empty());

    // Delimiter lines are exactly the parts and the close.
    const std::vector<std::string> all_lines = Split(eml, "\r\n");
    size_t delimiters = 0, closes = 0;
    for (const std::string& line : all_lines) {
      if (line.rfind("--" + boundary, 0) != 0) continue;
      if (line == "--" + boundary) {
        ++delimiters;
      } else if (line == "--" + boundary + "--") {
        ++closes;
      } else {
        ADD_FAILURE() << "a line starts like the boundary: " << line;
      }
    }
    EXPECT_EQ(delimiters, mine.size());
    EXPECT_EQ(closes, 1u);
    ASSERT_EQ(eml.substr(eml.size() - boundary.size() - 8), "\r\n--" + boundary + "--\r\n");

    const std::string body = eml.substr(blank + 4, eml.size() - (blank + 4) - (boundary.size() + 8));
    std::vector<std::string> parts = Split(body, "\r\n--" + boundary + "\r\n");
    ASSERT_EQ(parts.size(), mine.size() + 1);  // the preamble first
    for (size_t i = 0; i < mine.size(); ++i) {
      const Line& l = *mine[i];
      SCOPED_TRACE(l.envelope_id);
      std::string part = parts[i + 1];
      ASSERT_EQ(part.rfind("Content-Type: message/rfc822\r\n\r\n", 0), 0u);
      part = part.substr(std::string("Content-Type: message/rfc822\r\n\r\n").size());
      // The part ends with the CRLF that belongs to the next delimiter.
      ASSERT_GE(part.size(), 2u);
      ASSERT_EQ(part.substr(part.size() - 2), "\r\n");
      part.resize(part.size() - 2);
      const size_t inner_blank = part.find("\r\n\r\n");
      ASSERT_NE(inner_blank, std::string::npos);
      const Headers inner = ParseHeaders(part.substr(0, inner_blank));
      for (const std::string& name : inner.Names()) EXPECT_TRUE(inner_allowed.count(name)) << name;
      EXPECT_EQ(inner.One("Message-ID"), "<" + MessageId(l.envelope_id) + "@holdfast.invalid>");
      EXPECT_EQ(DecodeHeader(inner.One("X-Holdfast-Conversation")), id);
      EXPECT_EQ(DecodeHeader(inner.One("X-Holdfast-Sender")), l.sender);
      EXPECT_EQ(inner.One("X-Holdfast-Signature"), l.signature_valid ? "valid" : "invalid");
      EXPECT_EQ(inner.One("X-Holdfast-Opened"), l.text ? "yes" : "no");
      EXPECT_EQ(inner.One("X-Holdfast-Epoch"), "3");
      EXPECT_EQ(inner.One("Content-Type"), "text/plain; charset=utf-8");
      EXPECT_EQ(inner.One("Content-Transfer-Encoding"), "quoted-printable");
      const std::string from = inner.One("From");
      EXPECT_NE(from.find("@holdfast.invalid>"), std::string::npos) << from;
      if (l.sender == "alice") {
        EXPECT_EQ(from, "\"alice\" <alice@holdfast.invalid>");
      }
      if (l.sent_at == "2026-11-26T15:41:59.123Z") {
        EXPECT_EQ(inner.One("Date"), "Thu, 26 Nov 2026 15:41:59 +0000");
      }
      const std::string to = inner.One("To");
      if (l.recipients && l.recipients->empty()) {
        EXPECT_EQ(to, "undisclosed-recipients:;");
      }
      if (!l.recipients) {
        EXPECT_EQ(to, "undisclosed-recipients:;");  // nobody else seen in c_old
      }
      if (!l.error.empty()) {
        EXPECT_EQ(DecodeHeader(inner.One("X-Holdfast-Error")), l.error);
      }

      const std::string text = DecodeQuotedPrintable(part.substr(inner_blank + 4));
      for (const std::string& qp_line : Split(part.substr(inner_blank + 4), "\r\n")) {
        EXPECT_LE(qp_line.size(), 76u);
      }
      if (l.text) {
        std::string expected;
        for (size_t k = 0; k < l.text->size(); ++k) {
          if ((*l.text)[k] == '\r' && k + 1 < l.text->size() && (*l.text)[k + 1] == '\n') continue;
          if ((*l.text)[k] == '\n') expected += "\r\n"; else expected.push_back((*l.text)[k]);
        }
        EXPECT_EQ(text, expected);
      } else {
        EXPECT_NE(text.find("could not be opened"), std::string::npos) << text;
        EXPECT_NE(text.find(l.error), std::string::npos) << text;
      }
    }
  }
  // Hostile names start no header line and reach no address as they are
  // (the parts' header names were checked above; this covers the body too).
  const std::string evil = Eml(kEvilConversation);
  for (const char* injected : {"\nBcc:", "\nSubject: pwned", "\nX-Evil:", "\nX-Injected:", "victim@example.com"}) {
    EXPECT_EQ(evil.find(injected), std::string::npos) << injected;
  }
  EXPECT_NE(evil.find("<mallory__Bcc__victim_example_com."), std::string::npos);
}

TEST_F(ExportPackageTest, HtmlIsSelfContainedAndEscapesEveryUserString) {
  std::set<std::string> ids;
  for (const Line& l : Lines()) ids.insert(l.conversation_id);
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    const std::string html = Lower(HtmlOf(id));
    for (const char* banned : {"<script", "<img", "<iframe", "<link", "<object", "<a ", "src=\"", "href=",
                               "http://", "https://", "@import", "url("}) {
      EXPECT_EQ(html.find(banned), std::string::npos) << banned;
    }
    EXPECT_NE(html.find("content-security-policy"), std::string::npos);
    EXPECT_NE(html.find("&lt;b&gt;sec 2026-17&lt;/b&gt;"), std::string::npos);  // legal reference
    EXPECT_NE(html.find("acme &lt;bank&gt;"), std::string::npos);
    EXPECT_NE(html.find(" utc"), std::string::npos);
  }
  const std::string plain = HtmlOf("c_plain");
  EXPECT_EQ(plain.find(kScript), std::string::npos);
  EXPECT_NE(plain.find("Hello &lt;b&gt;bob&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; "
                       "&#39;single&#39;"),
            std::string::npos);
  EXPECT_NE(plain.find("2026-11-26T15:41:59.123Z UTC"), std::string::npos);
  EXPECT_NE(plain.find("signature valid"), std::string::npos);
  const std::string evil = HtmlOf(kEvilConversation);
  EXPECT_NE(evil.find("SIGNATURE NOT VALID"), std::string::npos);
  EXPECT_NE(evil.find("could not be opened"), std::string::npos);
  EXPECT_NE(evil.find("&lt;img src=x onerror=alert(1)&gt;"), std::string::npos);
  EXPECT_NE(evil.find("Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x98\x80"), std::string::npos);
}

TEST_F(ExportPackageTest, LoadFileHasOneRowPerMessageAndEveryRowTheHeadersFields) {
  const std::string dat = Read(dir_ / "loadfile.dat");
  ASSERT_EQ(dat.rfind("\xef\xbb\xbf", 0), 0u);
  ASSERT_TRUE(OnlyCrlf(dat));
  ASSERT_EQ(dat.substr(dat.size() - 2), "\r\n");
  std::vector<std::string> rows = Split(dat.substr(3, dat.size() - 5), "\r\n");
  const std::vector<Line> lines = Lines();
  ASSERT_EQ(rows.size(), lines.size() + 1);
  const std::string thorn = "\xc3\xbe";
  auto fields_of = [&](const std::string& row) {
    std::vector<std::string> fields = Split(row, "\x14");
    for (std::string& f : fields) {
      EXPECT_GE(f.size(), 2 * thorn.size());
      EXPECT_EQ(f.rfind(thorn, 0), 0u) << f;
      EXPECT_EQ(f.substr(f.size() - thorn.size()), thorn) << f;
      f = f.substr(thorn.size(), f.size() - 2 * thorn.size());
      EXPECT_EQ(f.find(thorn), std::string::npos) << "a qualifier inside a value: " << f;
    }
    return fields;
  };
  const std::vector<std::string> header = fields_of(rows[0]);
  std::map<std::string, size_t> column;
  for (size_t i = 0; i < header.size(); ++i) column[header[i]] = i;
  for (const char* name : {"BEGDOC", "ENDDOC", "FROM", "TO", "DATESENT", "CONVERSATION", "MESSAGEID", "SIGNATURE",
                           "NATIVEPATH", "TEXT"}) {
    EXPECT_TRUE(column.count(name)) << name;
  }
  std::set<std::string> derived_names;
  for (const auto& f : derived_) derived_names.insert(f.name);
  for (size_t r = 1; r < rows.size(); ++r) {
    const Line& l = lines[r - 1];
    SCOPED_TRACE(l.envelope_id);
    const std::vector<std::string> v = fields_of(rows[r]);
    ASSERT_EQ(v.size(), header.size());
    char control[32];
    std::snprintf(control, sizeof control, "HF7-%06zu", r);
    EXPECT_EQ(v[column["BEGDOC"]], control);
    EXPECT_EQ(v[column["ENDDOC"]], control);
    EXPECT_EQ(v[column["MESSAGEID"]], MessageId(l.envelope_id));
    EXPECT_EQ(v[column["SIGNATURE"]], l.signature_valid ? "valid" : "invalid");
    EXPECT_EQ(v[column["NATIVEPATH"]], "conversations/" + ConversationFileStem(l.conversation_id) + ".eml");
    EXPECT_TRUE(derived_names.count(v[column["NATIVEPATH"]]));
    if (l.sent_at.size() > 10 && l.sent_at[4] == '-') {
      EXPECT_EQ(v[column["DATESENT"]], l.sent_at.substr(0, 10));
    }
  }
  // Newlines, the delimiter and the qualifier inside a value.
  const std::vector<std::string> tricky = fields_of(rows[2]);
  const std::string text = tricky[column["TEXT"]];
  EXPECT_EQ(text.find('\x14'), std::string::npos);
  EXPECT_NE(text.find("Line1\xc2\xaeLine2\xc2\xae"), std::string::npos) << text;
  EXPECT_NE(text.find("thorn \xef\xbf\xbd and delimiter \xef\xbf\xbd and"), std::string::npos) << text;
  EXPECT_EQ(tricky[column["FROM"]], "mallory\xc2\xae" "Bcc: victim@example.com");
}

// ------------------------------------------------------------ verifying

TEST_F(ExportPackageTest, AnIntactPackageVerifiesWithAndWithoutAPinnedKey) {
  auto pinned = VerifyPackage(dir_.string(), root_.public_key());
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_TRUE(pinned->intact()) << Problems(*pinned);
  EXPECT_EQ(pinned->format, "holdfast-export/1");
  EXPECT_EQ(pinned->request_id, 7);
  EXPECT_EQ(pinned->message_count, 6u);
  EXPECT_EQ(pinned->org_root_public_key, ToHex(root_.public_key()));
  EXPECT_GE(pinned->checked.size(), files_.size() + 2);

  auto unpinned = VerifyPackage(dir_.string(), {});
  ASSERT_TRUE(unpinned.ok());
  EXPECT_TRUE(unpinned->intact()) << Problems(*unpinned);
  EXPECT_TRUE(std::any_of(unpinned->checked.begin(), unpinned->checked.end(),
                          [](const std::string& c) { return c.find("no org root key pinned") != std::string::npos; }));
}

TEST_F(ExportPackageTest, AChangedByteInAnyListedFileIsFound) {
  for (const PackageFileInfo& f : files_) {
    SCOPED_TRACE(f.name);
    const fs::path copy = Copy();
    std::string content = Read(copy / f.name);
    content[content.size() / 2] ^= 0x01;
    Write(copy / f.name, content);
    ExpectProblems(copy, root_.public_key(), {f.name + ": "});
  }
}

TEST_F(ExportPackageTest, ARemovedFileIsFound) {
  const fs::path copy = Copy();
  fs::remove(copy / "loadfile.dat");
  ExpectProblems(copy, root_.public_key(), {"loadfile.dat: is missing"});
}

TEST_F(ExportPackageTest, AnExtraFileOrSymbolicLinkIsFound) {
  const fs::path copy = Copy();
  Write(copy / "conversations" / "extra.eml", "From: nobody\r\n\r\nplanted\r\n");
  fs::create_directory(copy / "sub");
  Write(copy / "sub" / "deeper.txt", "x");
  fs::create_symlink("/etc/hostname", copy / "link");
  ExpectProblems(copy, root_.public_key(),
                 {"conversations/extra.eml: in the package but not listed",
                  "sub/deeper.txt: in the package but not listed", "link: a symbolic link"});
}

TEST_F(ExportPackageTest, AnEditedManifestNoLongerVerifies) {
  const fs::path copy = Copy();
  std::string manifest = Read(copy / "manifest.json");
  const size_t at = manifest.find("\"message_count\":6");
  ASSERT_NE(at, std::string::npos) << manifest;
  manifest.replace(at, 17, "\"message_count\":5");
  Write(copy / "manifest.json", manifest);
  ExpectProblems(copy, root_.public_key(), {"manifest.sig: does not verify", "message_count is 5"});
}

TEST_F(ExportPackageTest, ASignatureByAnotherKeyIsFound) {
  // The same manifest, signed by another key.
  const fs::path copy = Copy();
  Sign(copy, Read(copy / "manifest.json"), other_);
  ExpectProblems(copy, root_.public_key(), {"manifest.sig: does not verify"});

  // A forger's package that names and is signed by the forger's key is
  // self-consistent: only the pinned key tells.
  const fs::path forged = Copy();
  Sign(forged, ManifestJson(files_, other_.public_key(), 6), other_);
  auto self_consistent = VerifyPackage(forged.string(), {});
  ASSERT_TRUE(self_consistent.ok());
  EXPECT_TRUE(self_consistent->intact()) << Problems(*self_consistent);
  ExpectProblems(forged, root_.public_key(), {"not the pinned key", "manifest.sig: does not verify"});
}

TEST_F(ExportPackageTest, APinnedKeyThatDiffersIsFound) {
  ExpectProblems(dir_, other_.public_key(), {"not the pinned key", "manifest.sig: does not verify"});
}

TEST_F(ExportPackageTest, ANameThatLeavesThePackageIsRefusedEvenWhenSignedAndHashed) {
  // A file outside the package, listed with its true hash, in a manifest
  // the true key signed: the name alone makes it a problem.
  Write(tmp_.path() / "outside.txt", "outside");
  const PackageFileInfo outside = Describe(tmp_.path(), "outside.txt");
  auto listing = [&](const std::string& name) {
    const fs::path copy = Copy();
    std::vector<PackageFileInfo> files = files_;
    files.push_back({name, outside.sha256, outside.bytes});
    Sign(copy, ManifestJson(files, root_.public_key(), 6), root_);
    return copy;
  };
  for (const std::string& name : {std::string("../outside.txt"), std::string("conversations/../../outside.txt"),
                                  (tmp_.path() / "outside.txt").string(), std::string("./messages.jsonl"),
                                  std::string("conversations//x")}) {
    SCOPED_TRACE(name);
    ExpectProblems(listing(name), root_.public_key(), {"not a name a manifest may list"});
  }
  // A listed file reached through a symbolic link.
  const fs::path copy = listing("up/outside.txt");
  fs::create_symlink(tmp_.path(), copy / "up");
  ExpectProblems(copy, root_.public_key(), {"up/outside.txt: has a symbolic link"});
}

TEST_F(ExportPackageTest, AMissingSignatureOrManifestIsAProblemAMissingDirectoryAnError) {
  const fs::path no_sig = Copy();
  fs::remove(no_sig / "manifest.sig");
  ExpectProblems(no_sig, root_.public_key(), {"manifest.sig is missing"});

  const fs::path no_manifest = Copy();
  fs::remove(no_manifest / "manifest.json");
  ExpectProblems(no_manifest, root_.public_key(), {"manifest.json is missing", "loadfile.dat: not covered"});

  auto missing = VerifyPackage((tmp_.path() / "nowhere").string(), root_.public_key());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
}

TEST(ManifestSignatureTest, ChecksTheLabelledManifestBytes) {
  P256Key key;
  const std::string manifest = "{\"format\":\"holdfast-export/1\"}\n";
  const std::string sig = ToHex(key.Sign(Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest)})));
  EXPECT_TRUE(VerifyManifestSignature(manifest, sig + "\n", key.public_key()).ok());
  EXPECT_EQ(VerifyManifestSignature(manifest + " ", sig, key.public_key()).code(), Code::kCryptoFailure);
  const std::string unlabelled = ToHex(key.Sign(AsBytes(manifest)));
  EXPECT_EQ(VerifyManifestSignature(manifest, unlabelled, key.public_key()).code(), Code::kCryptoFailure);
  EXPECT_EQ(VerifyManifestSignature(manifest, "zz", key.public_key()).code(), Code::kInvalidArgument);
  EXPECT_EQ(VerifyManifestSignature(manifest, sig.substr(2), key.public_key()).code(), Code::kInvalidArgument);
}

TEST(PackageNameTest, OnlyRelativeNamesInsideThePackage) {
  for (const char* good : {"messages.jsonl", "conversations/c-0123.eml", "a/b/c", "..x", "x.."}) {
    EXPECT_TRUE(IsSafePackageName(good)) << good;
  }
  for (const char* bad : {"", "/etc/passwd", "..", "../x", "a/../b", "a/..", "./a", "a/./b", "a//b", "a/",
                          "a\\b", "a\nb", "a\rb", "\x1b[2Jx"}) {
    EXPECT_FALSE(IsSafePackageName(bad)) << bad;
  }
}

}  // namespace
}  // namespace holdfast::archive
