#include "holdfast/archive/export_package.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Poco/Base64Encoder.h>
#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "holdfast/base/time.h"
#include "holdfast/protocol/identity.h"
#include "holdfast/protocol/labels.h"
#include "holdfast/protocol/primitives.h"
#include "json.h"
#include "package_file.h"

namespace holdfast::archive {

namespace fs = std::filesystem;
using internal::ErrnoMessage;
using internal::PackageFile;
using internal::SanitizeUtf8;

namespace {

constexpr std::string_view kMessagesFile = "messages.jsonl";
constexpr std::string_view kManifestFile = "manifest.json";
constexpr std::string_view kSignatureFile = "manifest.sig";
constexpr std::string_view kLoadFile = "loadfile.dat";
constexpr std::string_view kConversationsDir = "conversations";
constexpr std::string_view kFormat = "holdfast-export/1";
// Addresses in EML files: RFC 2606 reserves .invalid, so no address in a
// package can ever reach anyone.
constexpr std::string_view kMailDomain = "holdfast.invalid";
constexpr std::string_view kCrlf = "\r\n";

std::string Utf8(std::string_view s) { return SanitizeUtf8(s, std::string::npos); }

// Text from a package for a report line a terminal will show: valid UTF-8,
// control characters as \xNN, so a file name cannot move the cursor.
std::string Shown(std::string_view s) {
  std::string out;
  for (char c : Utf8(s)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// ------------------------------------------------------------ messages.jsonl

struct Message {
  int64_t envelope_id = 0;
  std::string message_id;
  std::string conversation_id;
  std::string sender_user;
  std::string sender_device;
  std::string sent_at;               // as written
  std::optional<int64_t> sent_at_ms; // when it parses
  int64_t epoch_id = 0;
  bool signature_valid = false;
  std::optional<std::string> text;  // null: not opened
  std::string error;
  std::optional<std::vector<std::string>> recipients;  // absent in older packages
  std::string conversation_kind;                       // "" when absent
};

std::string StringOf(const Poco::JSON::Object& o, const std::string& name) {
  if (!o.has(name) || o.isNull(name)) return "";
  const Poco::Dynamic::Var v = o.get(name);
  return v.isString() ? v.extract<std::string>() : v.toString();
}

int64_t IntOf(const Poco::JSON::Object& o, const std::string& name) {
  if (!o.has(name) || o.isNull(name)) return 0;
  const Poco::Dynamic::Var v = o.get(name);
  return v.isInteger() && v.isSigned() ? v.convert<Poco::Int64>() : 0;
}

Result<Message> ParseMessage(const std::string& line, size_t line_no) {
  const std::string where = std::string(kMessagesFile) + " line " + std::to_string(line_no);
  try {
    Poco::JSON::Parser parser;
    const Poco::Dynamic::Var parsed = parser.parse(line);
    if (parsed.type() != typeid(Poco::JSON::Object::Ptr)) {
      return Status::InvalidArgument(where + " is not a JSON object");
    }
    const Poco::JSON::Object& o = *parsed.extract<Poco::JSON::Object::Ptr>();
    for (const char* required : {"message_id", "conversation_id", "sender_user"}) {
      if (!o.has(required) || !o.get(required).isString()) {
        return Status::InvalidArgument(where + " has no string \"" + required + "\"");
      }
    }
    Message m;
    m.envelope_id = IntOf(o, "envelope_id");
    m.message_id = StringOf(o, "message_id");
    m.conversation_id = StringOf(o, "conversation_id");
    m.sender_user = StringOf(o, "sender_user");
    m.sender_device = StringOf(o, "sender_device");
    m.sent_at = StringOf(o, "sent_at");
    m.sent_at_ms = ParseUtc(m.sent_at);
    m.epoch_id = IntOf(o, "epoch_id");
    m.signature_valid = o.has("signature_valid") && o.get("signature_valid").isBoolean() &&
                        o.get("signature_valid").extract<bool>();
    if (o.has("text") && !o.isNull("text")) m.text = StringOf(o, "text");
    m.error = StringOf(o, "error");
    if (o.isArray("recipients")) {
      std::vector<std::string> recipients;
      const Poco::JSON::Array::Ptr array = o.getArray("recipients");
      for (size_t i = 0; i < array->size(); ++i) {
        const Poco::Dynamic::Var v = array->get(static_cast<unsigned>(i));
        if (v.isString()) recipients.push_back(v.extract<std::string>());
      }
      m.recipients = std::move(recipients);
    }
    m.conversation_kind = StringOf(o, "conversation_kind");
    return m;
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument(where + " is not JSON: " + e.displayText());
  }
}

struct Conversation {
  std::string id;
  std::string stem;  // ConversationFileStem(id)
  std::string kind;
  std::set<std::string> participants;
  std::vector<const Message*> messages;  // storage order
  std::string eml_path() const { return std::string(kConversationsDir) + "/" + stem + ".eml"; }
  std::string html_path() const { return std::string(kConversationsDir) + "/" + stem + ".html"; }
};

// ------------------------------------------------------------ mail encoding

std::string Base64(std::string_view data) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.rdbuf()->setLineLength(0);
  encoder.write(data.data(), static_cast<std::streamsize>(data.size()));
  encoder.close();
  return out.str();
}

// RFC 2047 encoded words ("=?utf-8?B?...?="), each under 75 characters and
// holding whole UTF-8 characters, separated by folding white space.
std::string EncodedWords(std::string_view text) {
  const std::string utf8 = Utf8(text);
  constexpr size_t kChunk = 45;  // 60 base64 characters a word
  std::string out;
  size_t i = 0;
  while (i < utf8.size()) {
    size_t end = std::min(utf8.size(), i + kChunk);
    while (end < utf8.size() && (static_cast<unsigned char>(utf8[end]) & 0xC0) == 0x80) --end;
    if (!out.empty()) out += "\r\n ";
    out += "=?utf-8?B?" + Base64(std::string_view(utf8).substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// Unstructured header text (RFC 5322 section 3.2.5): short printable ASCII
// as it is, anything else (CR, LF, controls, non-ASCII, "=?", long text) as
// encoded words, so no value can end its header line or start another.
std::string HeaderText(std::string_view text) {
  const bool plain = text.size() <= 200 && text.find("=?") == std::string_view::npos &&
                     std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
  return plain ? std::string(text) : EncodedWords(text);
}

bool IsAtomChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// The local part for a user: the name itself when it is a dot-atom of
// letters, digits, '.', '_' and '-' of at most 64 bytes; otherwise the name
// with every other character (and '.') as '_', cut to 40 bytes, then '.'
// and 8 hex digits of SHA-256(name), so distinct names stay distinct.
std::string LocalPart(std::string_view user) {
  const bool atom = !user.empty() && user.size() <= 64 && user.front() != '.' && user.back() != '.' &&
                    user.find("..") == std::string_view::npos &&
                    std::all_of(user.begin(), user.end(), [](char c) { return IsAtomChar(c) || c == '.'; });
  if (atom) return std::string(user);
  std::string out;
  for (char c : user.substr(0, 40)) out.push_back(IsAtomChar(c) ? c : '_');
  if (out.empty()) out = "user";
  return out + "." + ToHex(protocol::Sha256(AsBytes(user))).substr(0, 8);
}

// `"name" <local@holdfast.invalid>`; a name that is not plain ASCII words
// is given as encoded words instead of a quoted string.
std::string Mailbox(std::string_view user) {
  const bool plain = !user.empty() && user.size() <= 64 &&
                     std::all_of(user.begin(), user.end(), [](char c) { return IsAtomChar(c) || c == '.' || c == ' '; });
  const std::string display = plain ? "\"" + std::string(user) + "\"" : EncodedWords(user);
  return (display.empty() ? std::string("\"\"") : display) + " <" + LocalPart(user) + "@" +
         std::string(kMailDomain) + ">";
}

std::string AddressList(const std::vector<std::string>& users) {
  if (users.empty()) return "undisclosed-recipients:;";
  std::string out;
  for (const std::string& u : users) {
    if (!out.empty()) out += ",\r\n ";
    out += Mailbox(u);
  }
  return out;
}

// RFC 2045 section 6.7 with CRLF line ends: "\n" and "\r\n" in the text are
// line breaks, a lone CR is =0D; lines are at most 76 characters.
std::string QuotedPrintable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  size_t line = 0;
  auto emit = [&](std::string_view token) {
    if (line + token.size() > 75) {
      out += "=\r\n";
      line = 0;
    }
    out += token;
    line += token.size();
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\r' && i + 1 < n && text[i + 1] == '\n') continue;  // the '\n' breaks the line
    if (c == '\n') {
      out += kCrlf;
      line = 0;
      continue;
    }
    const bool at_line_end = i + 1 == n || text[i + 1] == '\n' ||
                             (text[i + 1] == '\r' && i + 2 < n && text[i + 2] == '\n');
    const bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_line_end);
    if (literal) {
      const char ch = static_cast<char>(c);
      emit(std::string_view(&ch, 1));
    } else {
      const char escaped[3] = {'=', kHex[c >> 4], kHex[c & 0x0f]};
      emit(std::string_view(escaped, 3));
    }
  }
  return out;
}

std::string Header(std::string_view name, std::string_view value) {
  return std::string(name) + ": " + std::string(value) + std::string(kCrlf);
}

// A message id for the Message-ID header: the hex id when it is hex,
// otherwise a hash of whatever the line holds.
std::string MessageIdLocal(std::string_view message_id) {
  const bool hex = !message_id.empty() && message_id.size() <= 64 &&
                   std::all_of(message_id.begin(), message_id.end(),
                               [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  return hex ? std::string(message_id) : "x" + ToHex(protocol::Sha256(AsBytes(message_id))).substr(0, 32);
}

std::string SentDate(const Message& m, const PackageContext& ctx) {
  return FormatRfc5322(m.sent_at_ms.value_or(ctx.created_at_ms));
}

std::string Recipients(const Message& m, const Conversation& c) {
  if (m.recipients) return AddressList(*m.recipients);
  // Older packages do not say; everyone else seen in the conversation.
  std::vector<std::string> others;
  for (const std::string& p : c.participants) {
    if (p != m.sender_user) others.push_back(p);
  }
  return AddressList(others);
}

std::string Placeholder(const Message& m) {
  return "[This message could not be opened at export time.]\n[Error: " +
         (m.error.empty() ? std::string("none recorded") : m.error) + "]\n";
}

std::string MessagePart(const Message& m, const Conversation& c, const PackageContext& ctx) {
  std::string out;
  out += Header("From", Mailbox(m.sender_user));
  out += Header("To", Recipients(m, c));
  out += Header("Date", SentDate(m, ctx));
  out += Header("Subject", HeaderText("Conversation " + c.id));
  out += Header("Message-ID", "<" + MessageIdLocal(m.message_id) + "@" + std::string(kMailDomain) + ">");
  out += Header("MIME-Version", "1.0");
  out += Header("X-Holdfast-Envelope-Id", std::to_string(m.envelope_id));
  out += Header("X-Holdfast-Conversation", HeaderText(c.id));
  if (!c.kind.empty()) out += Header("X-Holdfast-Conversation-Kind", HeaderText(c.kind));
  out += Header("X-Holdfast-Sender", HeaderText(m.sender_user));
  out += Header("X-Holdfast-Sender-Device", HeaderText(m.sender_device));
  out += Header("X-Holdfast-Sent-At", HeaderText(m.sent_at));
  out += Header("X-Holdfast-Epoch", std::to_string(m.epoch_id));
  out += Header("X-Holdfast-Signature", m.signature_valid ? "valid" : "invalid");
  out += Header("X-Holdfast-Opened", m.text ? "yes" : "no");
  if (!m.error.empty()) out += Header("X-Holdfast-Error", HeaderText(m.error));
  out += Header("Content-Type", "text/plain; charset=utf-8");
  out += Header("Content-Transfer-Encoding", "quoted-printable");
  out += kCrlf;
  out += QuotedPrintable(m.text ? *m.text : Placeholder(m));
  return out;
}

// The boundary starts with "=_": quoted-printable and base64 never produce
// that pair and every header line starts with its name, so no line of any
// part can be a boundary line.
std::string Boundary(const Conversation& c) { return "=_holdfast_digest_" + c.stem.substr(c.stem.size() - 16); }

std::string ConversationEml(const Conversation& c, const PackageContext& ctx) {
  const std::string boundary = Boundary(c);
  std::string out;
  out += Header("From", HeaderText("Holdfast export") + " <export@" + std::string(kMailDomain) + ">");
  out += Header("To", AddressList({c.participants.begin(), c.participants.end()}));
  out += Header("Date", FormatRfc5322(ctx.created_at_ms));
  out += Header("Subject", HeaderText("Conversation " + c.id + " (request " + std::to_string(ctx.request_id) + ")"));
  out += Header("Message-ID", "<request-" + std::to_string(ctx.request_id) + "." + c.stem.substr(c.stem.size() - 16) +
                                  "@" + std::string(kMailDomain) + ">");
  out += Header("MIME-Version", "1.0");
  out += Header("X-Holdfast-Org", HeaderText(ctx.org));
  out += Header("X-Holdfast-Request-Id", std::to_string(ctx.request_id));
  out += Header("X-Holdfast-Case-Id", std::to_string(ctx.case_id));
  out += Header("X-Holdfast-Purpose", HeaderText(ctx.purpose));
  out += Header("X-Holdfast-Legal-Reference", HeaderText(ctx.legal_reference));
  out += Header("X-Holdfast-Conversation", HeaderText(c.id));
  if (!c.kind.empty()) out += Header("X-Holdfast-Conversation-Kind", HeaderText(c.kind));
  out += Header("X-Holdfast-Message-Count", std::to_string(c.messages.size()));
  out += Header("Content-Type", "multipart/digest; boundary=\"" + boundary + "\"");
  out += kCrlf;
  out += "This is a Holdfast export: one message/rfc822 part per chat message, in storage order.\r\n";
  for (const Message* m : c.messages) {
    out += kCrlf;
    out += "--" + boundary + std::string(kCrlf);
    out += Header("Content-Type", "message/rfc822");
    out += kCrlf;
    out += MessagePart(*m, c, ctx);
    out += kCrlf;
  }
  out += kCrlf;
  out += "--" + boundary + "--" + std::string(kCrlf);
  return out;
}

// ------------------------------------------------------------ HTML

std::string Html(std::string_view text) {
  std::string out;
  for (char c : Utf8(text)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string Row(std::string_view label, std::string_view value) {
  return "<tr><th>" + std::string(label) + "</th><td>" + Html(value) + "</td></tr>\n";
}

std::string Join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

constexpr std::string_view kCss =
    "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#111;padding:0 1em}"
    "h1{font-size:1.4em}table.meta{border-collapse:collapse;margin-bottom:1em}"
    "table.meta th{text-align:left;padding:.15em 1em .15em 0;color:#555;font-weight:600;vertical-align:top}"
    "table.meta td{padding:.15em 0;word-break:break-all}"
    ".msg{border:1px solid #ccc;border-radius:6px;padding:.6em .8em;margin:.7em 0}"
    ".msg.bad{border-color:#b00;background:#fff5f5}.head{display:flex;gap:1em;flex-wrap:wrap}"
    ".from{font-weight:700}.to,.ids{color:#555;font-size:.85em;word-break:break-all}"
    ".text{white-space:pre-wrap;word-break:break-word;margin:.4em 0}"
    ".missing{font-style:italic;color:#b00}.sig-ok{color:#070}.sig-bad{color:#b00;font-weight:700}"
    ".note{color:#555;font-size:.85em}";

std::string ConversationHtml(const Conversation& c, const PackageContext& ctx) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
      "<meta name=\"referrer\" content=\"no-referrer\">\n<title>Conversation " +
      Html(c.id) + " - request " + std::to_string(ctx.request_id) + "</title>\n<style>" + std::string(kCss) +
      "</style>\n</head>\n<body>\n<header>\n<h1>" + Html(ctx.org.empty() ? "Holdfast" : ctx.org) + ": conversation " + Html(c.id) +
      "</h1>\n<table class=\"meta\">\n";
  out += Row("Case", std::to_string(ctx.case_id));
  out += Row("Disclosure request", std::to_string(ctx.request_id));
  out += Row("Purpose", ctx.purpose);
  out += Row("Legal reference", ctx.legal_reference);
  out += Row("Conversation", c.id);
  if (!c.kind.empty()) out += Row("Kind", c.kind);
  out += Row("Participants", Join({c.participants.begin(), c.participants.end()}, ", "));
  out += Row("Messages", std::to_string(c.messages.size()));
  out += Row("Exported", FormatUtc(ctx.created_at_ms, TimePrecision::kSeconds));
  out += "</table>\n<p class=\"note\">Times are UTC, by the sender's clock. \"Signature valid\" is Holdfast's "
         "check at export time of the sender device's Ed25519 signature. manifest.json and manifest.sig "
         "in the package cover this file.</p>\n</header>\n<main>\n";
  for (const Message* m : c.messages) {
    const bool bad = !m->signature_valid || !m->text;
    out += std::string("<article class=\"msg") + (bad ? " bad" : "") + "\">\n<div class=\"head\"><span class=\"from\">" +
           Html(m->sender_user) + "</span><time datetime=\"" + Html(m->sent_at) + "\">" +
           Html(m->sent_at_ms ? FormatUtc(*m->sent_at_ms, TimePrecision::kMillis) : m->sent_at) + " UTC</time>" +
           (m->signature_valid ? "<span class=\"sig-ok\">signature valid</span>"
                               : "<span class=\"sig-bad\">SIGNATURE NOT VALID</span>") +
           "</div>\n";
    if (m->recipients) out += "<div class=\"to\">to " + Html(Join(*m->recipients, ", ")) + "</div>\n";
    if (m->text) {
      out += "<div class=\"text\">" + Html(*m->text) + "</div>\n";
    } else {
      out += "<div class=\"text missing\">This message could not be opened at export time.</div>\n";
    }
    if (!m->error.empty()) out += "<div class=\"text missing\">Error: " + Html(m->error) + "</div>\n";
    out += "<div class=\"ids\">message " + Html(m->message_id) + " &middot; device " + Html(m->sender_device) +
           " &middot; epoch " + std::to_string(m->epoch_id) + " &middot; envelope " +
           std::to_string(m->envelope_id) + "</div>\n</article>\n";
  }
  out += "</main>\n</body>\n</html>\n";
  return out;
}

// ------------------------------------------------------------ load file

constexpr std::string_view kDatDelimiter = "\x14";        // U+0014
constexpr std::string_view kDatQualifier = "\xc3\xbe";    // U+00FE þ
constexpr std::string_view kDatNewline = "\xc2\xae";      // U+00AE ®, Concordance's in-field newline
constexpr std::string_view kReplacement = "\xef\xbf\xbd"; // U+FFFD

constexpr const char* kDatFields[] = {
    "BEGDOC",      "ENDDOC",       "REQUEST",       "CASE",       "FROM",     "TO",
    "DATESENT",    "TIMESENT",     "SENTAT",        "CONVERSATION", "CONVERSATIONKIND", "MESSAGEID",
    "ENVELOPEID",  "SENDERDEVICE", "EPOCH",         "SIGNATURE",  "OPENED",   "ERROR",
    "NATIVEPATH",  "TRANSCRIPTPATH", "TEXT"};

// A value between qualifiers: valid UTF-8; CRLF, LF and CR as ®; the
// delimiter, the qualifier and other C0 controls but TAB as U+FFFD.
std::string DatValue(std::string_view value) {
  const std::string utf8 = Utf8(value);
  std::string out;
  for (size_t i = 0; i < utf8.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(utf8[i]);
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < utf8.size() && utf8[i + 1] == '\n') ++i;
      out += kDatNewline;
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      out += kReplacement;
    } else if (utf8.compare(i, kDatQualifier.size(), kDatQualifier) == 0) {
      out += kReplacement;
      i += kDatQualifier.size() - 1;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return std::string(kDatQualifier) + out + std::string(kDatQualifier);
}

std::string DatRow(const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += kDatDelimiter;
    out += DatValue(values[i]);
  }
  return out + std::string(kCrlf);
}

std::string ControlNumber(int64_t request_id, size_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "HF%lld-%06zu", static_cast<long long>(request_id), seq);
  return buf;
}

std::string LoadFile(const std::vector<Message>& messages, const std::map<std::string, Conversation>& conversations,
                     const PackageContext& ctx) {
  std::string out = "\xef\xbb\xbf";  // BOM
  out += DatRow({std::begin(kDatFields), std::end(kDatFields)});
  size_t seq = 0;
  for (const Message& m : messages) {
    const Conversation& c = conversations.at(m.conversation_id);
    const std::string control = ControlNumber(ctx.request_id, ++seq);
    std::string date, time;
    if (m.sent_at_ms) {
      const std::string iso = FormatUtc(*m.sent_at_ms, TimePrecision::kSeconds);  // YYYY-MM-DDTHH:MM:SSZ
      date = iso.substr(0, 10);
      time = iso.substr(11, 8);
    }
    std::vector<std::string> row = {
        control, control, std::to_string(ctx.request_id), std::to_string(ctx.case_id), m.sender_user,
        m.recipients ? Join(*m.recipients, "; ") : "", date, time, m.sent_at, m.conversation_id,
        c.kind, m.message_id, std::to_string(m.envelope_id), m.sender_device, std::to_string(m.epoch_id),
        m.signature_valid ? "valid" : "invalid", m.text ? "yes" : "no", m.error, c.eml_path(), c.html_path(),
        m.text ? *m.text : ""};
    out += DatRow(row);
  }
  return out;
}

// ------------------------------------------------------------ writing

Result<PackageFileInfo> WriteNew(const fs::path& dir, const std::string& name, std::string_view content) {
  HF_ASSIGN_OR_RETURN(PackageFile file, PackageFile::Create(dir / name));
  HF_RETURN_IF_ERROR(file.Write(content));
  HF_RETURN_IF_ERROR(file.Close());
  return PackageFileInfo{name, ToHex(file.Digest()), file.bytes()};
}

Result<std::vector<Message>> ReadMessages(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path.string());
  std::vector<Message> messages;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    HF_ASSIGN_OR_RETURN(Message m, ParseMessage(line, line_no));
    messages.push_back(std::move(m));
  }
  if (in.bad()) return Status::Unavailable("cannot read " + path.string());
  return messages;
}

// ------------------------------------------------------------ verifying

struct FileDigest {
  std::string sha256;
  uint64_t bytes = 0;
  uint64_t lines = 0;  // '\n' bytes
};

// Opens `name` below `dir_fd` one component at a time, refusing symbolic
// links and anything but directories on the way and a regular file at the
// end. The error says what was wrong, for a report line.
Result<int> OpenBeneath(int dir_fd, std::string_view name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t slash = std::min(name.find('/', start), name.size());
    parts.emplace_back(name.substr(start, slash - start));
    start = slash + 1;
  }
  int fd = ::dup(dir_fd);
  if (fd < 0) return Status::Unavailable(ErrnoMessage("dup"));
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY);
    const int next = ::openat(fd, parts[i].c_str(), flags);
    const int saved = errno;
    ::close(fd);
    if (next < 0) {
      if (saved == ENOENT) return Status::NotFound("is missing");
      if (saved == ELOOP || (saved == ENOTDIR && !last)) {
        return Status::InvalidArgument("has a symbolic link or a non-directory on its path");
      }
      errno = saved;
      return Status::Unavailable(ErrnoMessage("cannot be opened"));
    }
    fd = next;
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("is not a regular file");
  }
  return fd;
}

// Reads `fd` to its end, chunk by chunk, and closes it; stops early (and
// says so) when `sink` returns false.
Status Drain(int fd, const std::function<bool(std::string_view)>& sink) {
  char buf[1 << 16];
  Status status;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Status::Unavailable(ErrnoMessage("cannot be read"));
      break;
    }
    if (n == 0) break;
    if (!sink(std::string_view(buf, static_cast<size_t>(n)))) {
      status = Status::InvalidArgument("is too large");
      break;
    }
  }
  ::close(fd);
  return status;
}

Result<FileDigest> HashBeneath(int dir_fd, std::string_view name) {
  HF_ASSIGN_OR_RETURN(int fd, OpenBeneath(dir_fd, name));
  protocol::Sha256Hasher hasher;
  FileDigest digest;
  HF_RETURN_IF_ERROR(Drain(fd, [&](std::string_view chunk) {
    hasher.Update(AsBytes(chunk));
    digest.bytes += chunk.size();
    digest.lines += static_cast<uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    return true;
  }));
  digest.sha256 = ToHex(hasher.Finish());
  return digest;
}

// The manifest or its signature, whole.
Result<std::string> ReadBeneath(int dir_fd, std::string_view name) {
  constexpr size_t kMaxBytes = 64 << 20;
  HF_ASSIGN_OR_RETURN(int fd, OpenBeneath(dir_fd, name));
  std::string out;
  HF_RETURN_IF_ERROR(Drain(fd, [&](std::string_view chunk) {
    out.append(chunk);
    return out.size() <= kMaxBytes;
  }));
  return out;
}

// Every file below `root` that is not a directory, '/'-separated relative
// names; symbolic links are listed (and not followed).
void WalkTree(const fs::path& root, std::vector<std::string>& files, std::vector<std::string>& links,
              std::vector<std::string>& problems) {
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec);
  if (ec) {
    problems.push_back("cannot list " + root.string() + ": " + ec.message());
    return;
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      problems.push_back("cannot list part of " + root.string() + ": " + ec.message());
      return;
    }
    const std::string rel = it->path().lexically_relative(root).generic_string();
    const fs::file_status st = it->symlink_status(ec);
    if (fs::is_symlink(st)) {
      links.push_back(rel);
    } else if (!fs::is_directory(st)) {
      files.push_back(rel);
    }
  }
  if (ec) problems.push_back("cannot list part of " + root.string() + ": " + ec.message());
}

}  // namespace

std::string ConversationFileStem(std::string_view conversation_id) {
  std::string out;
  for (char c : conversation_id.substr(0, 48)) out.push_back(IsAtomChar(c) ? c : '_');
  if (out.empty()) out = "conversation";
  return out + "-" + ToHex(protocol::Sha256(AsBytes(conversation_id))).substr(0, 16);
}

bool IsSafePackageName(std::string_view name) {
  if (name.empty() || name.size() > 4096 || name.front() == '/') return false;
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') return false;
  }
  size_t start = 0;
  while (start <= name.size()) {
    const size_t slash = std::min(name.find('/', start), name.size());
    const std::string_view part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

Status VerifyManifestSignature(std::string_view manifest, std::string_view signature_text, ByteView org_root) {
  while (!signature_text.empty() && std::isspace(static_cast<unsigned char>(signature_text.back()))) {
    signature_text.remove_suffix(1);
  }
  const std::optional<Bytes> signature = FromHex(signature_text);
  if (!signature || signature->size() != 64) {
    return Status::InvalidArgument("the signature is not 64 bytes (r || s) in hex");
  }
  return protocol::EcdsaP256Verify(org_root, Concat({AsBytes(protocol::labels::kManifestSig), AsBytes(manifest)}),
                                   *signature);
}

Result<std::vector<PackageFileInfo>> WriteDerivedFiles(const std::string& dir, const PackageContext& ctx) {
  const fs::path root(dir);
  HF_ASSIGN_OR_RETURN(std::vector<Message> messages, ReadMessages(root / kMessagesFile));

  std::map<std::string, Conversation> conversations;
  std::map<std::string, std::string> stems;  // stem -> conversation id
  for (const Message& m : messages) {
    auto [it, added] = conversations.try_emplace(m.conversation_id);
    Conversation& c = it->second;
    if (added) {
      c.id = m.conversation_id;
      c.stem = ConversationFileStem(c.id);
      auto [other, fresh] = stems.emplace(c.stem, c.id);
      if (!fresh) {
        return Status::Internal("conversations \"" + Shown(other->second) + "\" and \"" + Shown(c.id) +
                                "\" would share the file name " + c.stem);
      }
    }
    if (c.kind.empty()) c.kind = m.conversation_kind;
    c.participants.insert(m.sender_user);
    if (m.recipients) c.participants.insert(m.recipients->begin(), m.recipients->end());
    c.messages.push_back(&m);
  }

  const fs::path conv_dir = root / kConversationsDir;
  if (::mkdir(conv_dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(conv_dir.string() + " already exists");
    return Status::Internal(ErrnoMessage("creating " + conv_dir.string()));
  }
  std::vector<PackageFileInfo> written;
  for (const auto& [id, c] : conversations) {
    HF_ASSIGN_OR_RETURN(PackageFileInfo eml, WriteNew(root, c.eml_path(), ConversationEml(c, ctx)));
    written.push_back(std::move(eml));
    HF_ASSIGN_OR_RETURN(PackageFileInfo html, WriteNew(root, c.html_path(), ConversationHtml(c, ctx)));
    written.push_back(std::move(html));
  }
  HF_ASSIGN_OR_RETURN(PackageFileInfo dat, WriteNew(root, std::string(kLoadFile), LoadFile(messages, conversations, ctx)));
  written.push_back(std::move(dat));
  HF_RETURN_IF_ERROR(internal::SyncDirectory(conv_dir));
  HF_RETURN_IF_ERROR(internal::SyncDirectory(root));
  std::sort(written.begin(), written.end(),
            [](const PackageFileInfo& a, const PackageFileInfo& b) { return a.name < b.name; });
  return written;
}

Result<PackageVerifyReport> VerifyPackage(const std::string& dir, ByteView expected_org_root) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound(dir + " is not a directory");
    return Status::Unavailable(ErrnoMessage("cannot open " + dir));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{dir_fd};

  PackageVerifyReport report;
  auto problem = [&](std::string line) { report.problems.push_back(std::move(line)); };
  auto ok = [&](std::string line) { report.checked.push_back(std::move(line)); };

  std::vector<std::string> present, links;
  WalkTree(fs::path(dir), present, links, report.problems);
  for (const std::string& link : links) problem(Shown(link) + ": a symbolic link (a package holds none)");

  auto manifest = ReadBeneath(dir_fd, kManifestFile);
  if (!manifest.ok()) {
    problem(std::string(kManifestFile) + " " + manifest.status().message());
    for (const std::string& f : present) {
      if (f != kSignatureFile) problem(Shown(f) + ": not covered, there is no manifest");
    }
    return report;
  }
  Poco::JSON::Object::Ptr object;
  try {
    Poco::JSON::Parser parser;
    const Poco::Dynamic::Var parsed = parser.parse(*manifest);
    if (parsed.type() == typeid(Poco::JSON::Object::Ptr)) object = parsed.extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    problem(std::string(kManifestFile) + " is not JSON: " + e.displayText());
  }
  if (!object) object = new Poco::JSON::Object;  // checks below then fail one by one
  report.format = StringOf(*object, "format");
  report.request_id = IntOf(*object, "request_id");
  report.message_count = static_cast<uint64_t>(std::max<int64_t>(0, IntOf(*object, "message_count")));
  report.org_root_public_key = StringOf(*object, "org_root_public_key");
  if (report.format == kFormat) {
    ok(std::string(kManifestFile) + ": format " + report.format + ", request " +
       std::to_string(report.request_id) + ", " + std::to_string(report.message_count) + " message(s)");
  } else {
    problem(std::string(kManifestFile) + ": format \"" + Shown(report.format) + "\", not " + std::string(kFormat));
  }

  // The key: the pinned one, which the manifest must name; else the
  // manifest's own, which proves only self-consistency.
  std::optional<Bytes> key;
  const std::optional<Bytes> named = FromHex(report.org_root_public_key);
  if (!expected_org_root.empty()) {
    key = Bytes(expected_org_root.begin(), expected_org_root.end());
    if (named && *named == *key) {
      ok(std::string(kManifestFile) + ": names the pinned org root key " + protocol::Fingerprint(*key));
    } else {
      problem(std::string(kManifestFile) + ": names org root key \"" + Shown(report.org_root_public_key) +
              "\", not the pinned key " + ToHex(*key));
    }
  } else if (named && named->size() == 65) {
    key = named;
    ok("no org root key pinned: the signature is checked against the key the manifest names, " +
       protocol::Fingerprint(*key) + "; compare it with an independent copy of the org root key");
  } else {
    problem(std::string(kManifestFile) + ": names no usable org root key, and none was pinned");
  }

  auto signature = ReadBeneath(dir_fd, kSignatureFile);
  if (!signature.ok()) {
    problem(std::string(kSignatureFile) + " " + signature.status().message());
  } else if (key) {
    const Status s = VerifyManifestSignature(*manifest, *signature, *key);
    if (s.ok()) {
      ok(std::string(kSignatureFile) + ": the org root " + protocol::Fingerprint(*key) + " signed manifest.json");
    } else {
      problem(std::string(kSignatureFile) + ": does not verify over manifest.json under " +
              protocol::Fingerprint(*key) + " (" + s.message() + ")");
    }
  }

  std::set<std::string> listed;
  const Poco::JSON::Array::Ptr files = object->isArray("files") ? object->getArray("files") : nullptr;
  if (!files) problem(std::string(kManifestFile) + ": has no \"files\" array");
  for (size_t i = 0; files && i < files->size(); ++i) {
    const Poco::JSON::Object::Ptr f = files->getObject(static_cast<unsigned>(i));
    if (!f) {
      problem(std::string(kManifestFile) + ": files[" + std::to_string(i) + "] is not an object");
      continue;
    }
    const std::string name = StringOf(*f, "name");
    const std::string shown = Shown(name);
    if (!IsSafePackageName(name) || name == kManifestFile || name == kSignatureFile) {
      problem("\"" + shown + "\": not a name a manifest may list (absolute, \"..\", \".\", empty part or control)");
      continue;
    }
    if (!listed.insert(name).second) {
      problem(shown + ": listed twice");
      continue;
    }
    std::string want_sha = StringOf(*f, "sha256");
    std::transform(want_sha.begin(), want_sha.end(), want_sha.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const int64_t want_bytes = IntOf(*f, "bytes");
    auto digest = HashBeneath(dir_fd, name);
    if (!digest.ok()) {
      problem(shown + ": " + digest.status().message());
      continue;
    }
    if (digest->sha256 != want_sha || static_cast<int64_t>(digest->bytes) != want_bytes) {
      problem(shown + ": " + std::to_string(digest->bytes) + " bytes, SHA-256 " + digest->sha256 +
              "; the manifest lists " + std::to_string(want_bytes) + " bytes, " + Shown(want_sha));
      continue;
    }
    ok(shown + ": " + std::to_string(digest->bytes) + " bytes, SHA-256 matches the manifest");
    if (name == kMessagesFile) {
      if (digest->lines == report.message_count) {
        ok(std::string(kMessagesFile) + ": " + std::to_string(digest->lines) + " line(s), the manifest's message_count");
      } else {
        problem(std::string(kMessagesFile) + ": " + std::to_string(digest->lines) +
                " line(s), but the manifest's message_count is " + std::to_string(report.message_count));
      }
    }
  }
  if (files && listed.count(std::string(kMessagesFile)) == 0) {
    problem(std::string(kManifestFile) + ": does not list " + std::string(kMessagesFile));
  }

  size_t unlisted = 0;
  for (const std::string& f : present) {
    if (f == kManifestFile || f == kSignatureFile || listed.count(f) != 0) continue;
    ++unlisted;
    problem(Shown(f) + ": in the package but not listed in the manifest");
  }
  if (unlisted == 0 && links.empty()) ok("no file in the package is missing from the manifest");
  return report;
}

}  // namespace holdfast::archive
