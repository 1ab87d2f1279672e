#include "holdfast/client/cli.h"

#include <signal.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include "holdfast/client/connection.h"
#include "files.h"
#include "holdfast/client/device.h"
#include "holdfast/client/key_store.h"
#include "holdfast/client/profile.h"
#include "holdfast/client/reconnect.h"
#include "holdfast/client/session.h"
#include "holdfast/protocol/identity.h"

namespace holdfast::client {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr milliseconds kConnectTimeout = std::chrono::seconds(10);
// How long recv waits for deliveries the gateway announced as pending.
constexpr milliseconds kPendingTimeout = std::chrono::seconds(30);
constexpr milliseconds kListenPoll = std::chrono::milliseconds(250);
constexpr size_t kAckBatch = 64;
constexpr size_t kMaxPassphraseSize = 4096;
constexpr char kPassphraseEnv[] = "HOLDFAST_PASSPHRASE";

constexpr char kUsage[] =
    R"(usage: holdfast-client --profile DIR [--passphrase-file FILE] <command> [options]

commands:
  register --server wss://HOST:PORT/v1 --ca FILE --user NAME
           (--code CODE | --password-file FILE | --password-stdin)
           [--certify-with DIR] [--insecure-plaintext-keys]
      Enrol a new device with a one-time enrollment code, or by signing in
      with the user's directory password (read from FILE or the first line of
      standard input; sent to the gateway inside TLS, never stored, and used
      for nothing else). Pins the TLS trust anchor FILE and the org root key,
      writes the profile to DIR and prints the device id. The user's first
      device creates the user's master key; a further device is certified by
      the registered profile in --certify-with DIR, which holds it (same
      passphrase). The private keys are encrypted under the passphrase (see
      below); --insecure-plaintext-keys keeps them unencrypted instead and
      needs no passphrase.
  send (--to USER[,USER...] | --conversation ID) TEXT...
      Send TEXT (the remaining arguments, joined by spaces) to the direct
      conversation with the named users, or to a group. Prints "sent <message
      id> to <conversation>".
  group create --title TITLE --members USER[,USER...]
  group add ID USER[,USER...]
  group remove ID USER[,USER...]
  group show ID
      Create a group conversation, change its members (anyone may add; only
      its creator may remove others; anyone may remove themself), or show it.
  rotate-prekey
      Replace this device's signed prekey now. send, recv and listen replace
      it by themselves as often as the organisation's gateway says at login
      (default weekly), and wipe replaced private prekeys after its grace
      period (default 35 days).
  recv [--wait SECONDS] [--json]
      Print the pending messages, then any that follow, and return once none
      arrived for SECONDS (default 1).
  listen [--json]
      Print messages as they arrive until interrupted (SIGINT or SIGTERM).
      recv and listen also answer the gateway's resend requests: a message
      this device sent that was still queued when a recipient enrolled a new
      device is sealed again for that device (to the same users only).
  history --conversation ID [--limit N] [--json]
      Print this user's stored history of a conversation, oldest first: the
      last N messages (default 50) the user sent or was sent. A message
      sealed to none of this device's keys is listed as not readable here,
      unless the organisation restored the user's history to this device:
      then it opens through the restored key and is marked restored.
  whoami
      Print the profile's user, device id, server and org.

--json prints one object per message: message_id, conversation_id,
sender_user, sender_device, sent_at_ms, text, resend_of, restored,
restore_request_id, status ("ok" or "rejected"), reason, notices; and one
object with status "notice" and kind "history_restored" per conversation a
history restore concerns (conversation_id, user, request_id, target_device,
text). Rejected messages failed verification; their text is never
shown, and the gateway is told why (for the compliance team).

Notices report what a user must know: that a conversation is archived by the
organisation, that a member added or removed a device, that a member's master
key changed, that a group's members changed.

The passphrase that encrypts the profile's private keys (Argon2id, then
ChaCha20-Poly1305) comes from --passphrase-file FILE (mode 0600; one trailing
newline is ignored) or else from the environment variable HOLDFAST_PASSPHRASE;
it is never taken from the command line. Every command needs it unless the
profile was registered with --insecure-plaintext-keys.

exit status: 0 success, 1 usage error, 2 refused or failed (reason on stderr)
)";

volatile std::sig_atomic_t g_stop = 0;
extern "C" void OnStopSignal(int) { g_stop = 1; }

// Restores the previous handlers on destruction.
class StopSignals {
 public:
  StopSignals() {
    g_stop = 0;
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

struct UsageError {
  std::string message;
};

struct Args {
  std::string command;
  std::map<std::string, std::string> options;
  std::set<std::string> flags;
  std::vector<std::string> positional;

  std::optional<std::string> Get(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second;
  }
};

const std::set<std::string> kValueOptions = {
    "profile", "server", "ca",    "user",    "code",        "to",          "wait",
    "title",   "members", "conversation", "certify-with", "passphrase-file", "limit",
    "password-file"};
const std::set<std::string> kFlagOptions = {"json", "help", "insecure-plaintext-keys", "password-stdin"};

// Options may appear anywhere; "--" ends them.
std::variant<Args, UsageError> ParseArgs(int argc, const char* const* argv) {
  Args a;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (!options_done && (arg == "-h")) arg = "--help";
    if (!options_done && arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      std::string name = arg.substr(2);
      std::optional<std::string> value;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      }
      if (kFlagOptions.count(name)) {
        if (value) return UsageError{"--" + name + " takes no value"};
        a.flags.insert(name);
      } else if (kValueOptions.count(name)) {
        if (!value) {
          if (i + 1 >= argc) return UsageError{"--" + name + " needs a value"};
          value = argv[++i];
        }
        if (a.options.count(name)) return UsageError{"--" + name + " given twice"};
        a.options[name] = *value;
      } else {
        return UsageError{"unknown option " + arg};
      }
      continue;
    }
    if (a.command.empty()) {
      a.command = arg;
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Makes untrusted text safe for a terminal: control characters (C0, DEL and
// the UTF-8 encodings of C1) are escaped, so a message can neither inject
// escape sequences nor fake further output lines.
std::string ForTerminal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char buf[8];
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7f) {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(s[i + 1]));
      out += buf;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string FormatTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm {};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(ms);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

class Cli {
 public:
  Cli(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  int Run(int argc, const char* const* argv) {
    auto parsed = ParseArgs(argc, argv);
    if (auto* u = std::get_if<UsageError>(&parsed)) return Usage(u->message);
    args_ = std::move(std::get<Args>(parsed));
    if (args_.flags.count("help")) {
      out_ << kUsage;
      return kExitOk;
    }
    if (args_.command.empty()) return Usage("no command given");
    auto profile = args_.Get("profile");
    if (!profile || profile->empty()) return Usage("--profile DIR is required");
    dir_ = *profile;

    if (args_.command == "register") return Register();
    if (args_.command == "send") return Send();
    if (args_.command == "recv") return Receive(/*listen=*/false);
    if (args_.command == "listen") return Receive(/*listen=*/true);
    if (args_.command == "whoami") return WhoAmI();
    if (args_.command == "history") return History();
    if (args_.command == "group") return Group();
    if (args_.command == "rotate-prekey") return RotatePrekey();
    return Usage("unknown command \"" + args_.command + "\"");
  }

 private:
  int Usage(const std::string& message) {
    err_ << "holdfast-client: " << message << "\n\n" << kUsage;
    return kExitUsage;
  }

  int Fail(const Status& s) {
    err_ << "holdfast-client: " << ForTerminal(s.message()) << "\n";
    return kExitFailed;
  }

  // Rejects options that do not belong to the current command.
  std::optional<int> OnlyOptions(std::set<std::string> allowed) {
    allowed.insert("profile");
    allowed.insert("passphrase-file");
    for (const auto& [name, value] : args_.options) {
      if (!allowed.count(name)) return Usage("--" + name + " is not an option of " + args_.command);
    }
    for (const auto& name : args_.flags) {
      if (!allowed.count(name)) return Usage("--" + name + " is not an option of " + args_.command);
    }
    return std::nullopt;
  }

  // The passphrase from --passphrase-file or HOLDFAST_PASSPHRASE, or
  // nullopt when neither is given.
  Result<std::optional<PassphraseWrapper>> Passphrase() const {
    SecretBytes passphrase;
    std::string source;
    if (auto file = args_.Get("passphrase-file")) {
      source = *file;
      HF_ASSIGN_OR_RETURN(passphrase, internal::ReadSecretFile(*file, kMaxPassphraseSize));
      size_t n = passphrase.size();
      if (n > 0 && passphrase.data()[n - 1] == '\n') --n;
      if (n > 0 && passphrase.data()[n - 1] == '\r') --n;
      passphrase.resize(n);
    } else if (const char* env = std::getenv(kPassphraseEnv)) {
      source = kPassphraseEnv;
      passphrase = SecretBytes(AsBytes(env));
    } else {
      return std::optional<PassphraseWrapper>();
    }
    if (passphrase.empty()) {
      return Status::InvalidArgument("the passphrase in " + source + " is empty");
    }
    HF_ASSIGN_OR_RETURN(auto wrapper, PassphraseWrapper::Create(passphrase.view()));
    return std::optional<PassphraseWrapper>(std::move(wrapper));
  }

  static Status NoPassphrase(const std::string& what) {
    return Status::FailedPrecondition(what + " needs a passphrase: set " + kPassphraseEnv +
                                      " or pass --passphrase-file FILE");
  }

  // Loads the profile (unwrapping its keys) and keeps its key store for saving.
  Result<Device> LoadDevice(bool require_registered = true) {
    HF_ASSIGN_OR_RETURN(auto wrapper, Passphrase());
    if (!wrapper) {
      HF_ASSIGN_OR_RETURN(ProfileSummary summary, PeekProfile(dir_));
      if (summary.version >= kProfileVersionWithoutSentLog &&
          summary.scheme != kInsecurePlaintextScheme) {
        return NoPassphrase("the profile in " + dir_.string() + " is encrypted and");
      }
    }
    auto loaded = LoadProfile(dir_, wrapper ? &*wrapper : nullptr);
    if (!loaded.ok()) return loaded.status().WithContext("profile " + dir_.string());
    store_.emplace(std::move(loaded->store));
    HF_ASSIGN_OR_RETURN(Device d, Device::FromProfile(std::move(loaded->profile)));
    if (require_registered && !d.registered()) {
      return Status::FailedPrecondition("profile in " + dir_.string() +
                                        " is not registered; run register");
    }
    return d;
  }

  Status Save(const Device& device) { return SaveProfile(dir_, device.profile(), *store_); }

  Result<Session> Login(const Device& device, wire::Authenticated* authenticated) {
    if (device.profile().ca_file.empty()) {
      return Status::FailedPrecondition("profile pins no TLS trust anchor");
    }
    HF_ASSIGN_OR_RETURN(
        Connection c, Connection::Connect(device.profile().server_url,
                                          dir_ / device.profile().ca_file, kConnectTimeout));
    Session session(std::move(c));
    auto auth = session.Login(device);
    if (!auth.ok()) return auth.status().WithContext("login");
    if (authenticated) *authenticated = std::move(*auth);
    return session;
  }

  int Register() {
    if (auto u = OnlyOptions({"server", "ca", "user", "code", "certify-with", "insecure-plaintext-keys",
                              "password-file", "password-stdin"})) {
      return *u;
    }
    auto server = args_.Get("server");
    auto ca = args_.Get("ca");
    auto user = args_.Get("user");
    auto code = args_.Get("code");
    const auto password_file = args_.Get("password-file");
    const bool password_stdin = args_.flags.count("password-stdin") != 0;
    if (!server || !ca || !user) return Usage("register needs --server, --ca and --user");
    if (int(code.has_value()) + int(password_file.has_value()) + int(password_stdin) != 1) {
      return Usage("register needs exactly one of --code, --password-file and --password-stdin");
    }
    if (!args_.positional.empty()) return Usage("register takes no arguments");
    if (user->empty()) return Usage("--user must not be empty");
    if (auto url = ParseServerUrl(*server); !url.ok()) return Usage(url.status().message());
    const bool insecure = args_.flags.count("insecure-plaintext-keys") != 0;

    if (insecure && (args_.Get("passphrase-file") || std::getenv(kPassphraseEnv) != nullptr)) {
      return Usage("--insecure-plaintext-keys and a passphrase (" + std::string(kPassphraseEnv) +
                   " or --passphrase-file) exclude each other");
    }
    auto wrapper = Passphrase();
    if (!wrapper.ok()) return Fail(wrapper.status());
    if (!insecure && !*wrapper) {
      return Fail(Status::FailedPrecondition(
          "register needs a passphrase to encrypt the new profile's keys: set " +
          std::string(kPassphraseEnv) +
          " or pass --passphrase-file FILE (or pass --insecure-plaintext-keys to keep them "
          "unencrypted)"));
    }

    if (ProfileExists(dir_)) {
      auto existing = PeekProfile(dir_);
      if (!existing.ok()) return Fail(existing.status());
      if (existing->registered) {
        return Fail(Status::AlreadyExists("profile in " + dir_.string() +
                                          " is already registered as " + existing->user));
      }
    }
    const auto certify_with = args_.Get("certify-with");
    auto device = Device::Generate(*user, NowMs(), /*with_master_key=*/!certify_with);
    if (!device.ok()) return Fail(device.status());
    if (certify_with) {
      if (Status s = CertifyFrom(*certify_with, *device); !s.ok()) return Fail(s);
    }
    if (insecure) {
      store_.emplace(KeyStore::InsecurePlaintext());
    } else {
      auto store = KeyStore::Create(**wrapper);
      if (!store.ok()) return Fail(store.status());
      store_.emplace(std::move(*store));
    }
    // The unregistered profile is written first so that a directory problem
    // shows before the gateway has enrolled keys we could not keep.
    if (Status s = InstallCaFile(dir_, *ca); !s.ok()) return Fail(s);
    if (Status s = Save(*device); !s.ok()) return Fail(s);

    auto connection = Connection::Connect(*server, *ca, kConnectTimeout);
    if (!connection.ok()) return Fail(connection.status());
    Session session(std::move(*connection));
    auto request = device->MakeRegisterRequest(code.value_or(""), NowMs());
    if (!request.ok()) return Fail(request.status());
    if (!code) {
      auto password = ReadPassword(password_file);
      if (!password.ok()) return Fail(password.status());
      request->set_password(AsString(password->view()));
    }
    auto registered = session.Register(*request);
    if (!request->password().empty()) {
      SecureWipe(request->mutable_password()->data(), request->password().size());
    }
    if (!registered.ok()) return Fail(registered.status().WithContext("register"));
    if (Status s = device->AcceptRegistration(*registered, *server, kProfileCaFileName); !s.ok()) {
      return Fail(s);
    }
    if (Status s = Save(*device); !s.ok()) return Fail(s);
    (void)session.Close();
    out_ << ToHex(device->device_id()) << "\n";
    return kExitOk;
  }

  // The directory password from `file`, or the first line of standard
  // input, without its line ending.
  Result<SecretBytes> ReadPassword(const std::optional<std::string>& file) {
    constexpr size_t kMaxPasswordSize = 1024;
    SecretBytes password;
    if (file) {
      HF_ASSIGN_OR_RETURN(password, internal::ReadSecretFile(*file, kMaxPasswordSize));
    } else {
      password = SecretBytes(kMaxPasswordSize + 1);
      size_t n = 0;
      for (int c; n < password.size() && (c = std::fgetc(stdin)) != EOF && c != '\n';) {
        password.data()[n++] = static_cast<uint8_t>(c);
      }
      if (n > kMaxPasswordSize) return Status::InvalidArgument("password on standard input is too long");
      password.resize(n);
    }
    size_t n = password.size();
    if (n > 0 && password.data()[n - 1] == '\n') --n;
    if (n > 0 && password.data()[n - 1] == '\r') --n;
    password.resize(n);
    if (password.empty()) return Status::InvalidArgument("the directory password is empty");
    return password;
  }

  int Send() {
    if (auto u = OnlyOptions({"to", "conversation"})) return *u;
    auto to = args_.Get("to");
    auto conversation_id = args_.Get("conversation");
    if (!to == !conversation_id) return Usage("send needs one of --to USER[,USER...] and --conversation ID");
    std::vector<std::string> members;
    if (to) {
      members = SplitList(*to);
      if (members.empty()) return Usage("--to names no user");
    }
    if (args_.positional.empty()) return Usage("send needs the message TEXT");
    std::string text;
    for (size_t i = 0; i < args_.positional.size(); ++i) {
      if (i) text += ' ';
      text += args_.positional[i];
    }

    auto device = LoadDevice();
    if (!device.ok()) return Fail(device.status());
    wire::Authenticated auth;
    auto session = Login(*device, &auth);
    if (!session.ok()) return Fail(session.status());
    if (Status s = MaintainPrekeys(*device, *session, auth); !s.ok()) return Fail(s);
    auto conversation = to ? session->OpenConversation(members)
                           : session->GetConversation(*conversation_id);
    if (!conversation.ok()) return Fail(conversation.status().WithContext("open conversation"));
    if (to) {
      if (Status s = CheckMembers(*conversation, members, device->profile().user); !s.ok()) {
        return Fail(s);
      }
    } else if (conversation->conversation_id() != *conversation_id) {
      return Fail(Status::PermissionDenied("gateway answered with another conversation"));
    }
    if (Status s = Observe(*device, *conversation); !s.ok()) return Fail(s);
    auto envelope = device->PrepareMessage(*conversation, text, NowMs());
    if (!envelope.ok()) return Fail(envelope.status());
    auto parsed = protocol::ParseEnvelope(*envelope);
    if (!parsed.ok()) return Fail(parsed.status());
    // Kept, sealed, so that it can be sealed again for a device enrolled
    // before it is delivered.
    if (Status s = device->RecordSent(*envelope, text, NowMs(), PrekeyPolicyFrom(auth).grace_ms);
        !s.ok()) {
      return Fail(s);
    }
    if (Status s = Save(*device); !s.ok()) return Fail(s);
    auto ack = session->Submit(*envelope);
    if (!ack.ok()) return Fail(ack.status());
    if (ack->message_id() != parsed->header.message_id()) {
      return Fail(Status::InvalidArgument("gateway acknowledged a different message id"));
    }
    (void)session->Close();
    out_ << "sent " << ToHex(AsBytes(ack->message_id())) << " to "
         << ForTerminal(conversation->conversation_id()) << "\n";
    return kExitOk;
  }

  static std::vector<std::string> SplitList(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream in(list);
    for (std::string m; std::getline(in, m, ',');) {
      if (!m.empty()) out.push_back(m);
    }
    return out;
  }

  // Certifies `device` with the master key of the registered profile in `other`.
  Status CertifyFrom(const std::string& other, Device& device) {
    HF_ASSIGN_OR_RETURN(auto wrapper, Passphrase());
    auto loaded = LoadProfile(other, wrapper ? &*wrapper : nullptr);
    if (!loaded.ok()) return loaded.status().WithContext("profile " + other);
    HF_ASSIGN_OR_RETURN(Device certifier, Device::FromProfile(std::move(loaded->profile)));
    if (certifier.profile().user != device.profile().user) {
      return Status::InvalidArgument("the profile in " + other + " belongs to " +
                                     certifier.profile().user);
    }
    HF_ASSIGN_OR_RETURN(auto cert, certifier.CertifyNewDevice(device.identity_public(), NowMs()));
    return device.UseCertificate(cert);
  }

  // Rotates the signed prekey when due and wipes retired ones past their
  // grace period; saves the profile before and after talking to the gateway.
  // A refused scheduled rotation is a warning: the current prekey still
  // works, and the next command tries again.
  Status MaintainPrekeys(Device& device, Session& session, const wire::Authenticated& auth,
                         bool force = false) {
    const PrekeyPolicy policy = PrekeyPolicyFrom(auth);
    const int64_t now = NowMs();
    bool dirty = device.ExpireRetiredPrekeys(now, policy.grace_ms) > 0;
    if (force || device.PrekeyRotationDue(now, policy.rotation_ms) ||
        !device.profile().pending_prekeys.empty()) {
      HF_ASSIGN_OR_RETURN(auto update, device.BeginPrekeyRotation(now));
      HF_RETURN_IF_ERROR(Save(device));
      auto confirmed = session.UpdatePrekey(update);
      if (!confirmed.ok() &&
          confirmed.status().message().find("(stale_prekey)") != std::string::npos) {
        // Never stored (a resend of the stored prekey is accepted): draw a
        // fresh one and try once more.
        HF_RETURN_IF_ERROR(device.AbandonPrekeyRotation());
        HF_ASSIGN_OR_RETURN(update, device.BeginPrekeyRotation(NowMs()));
        HF_RETURN_IF_ERROR(Save(device));
        confirmed = session.UpdatePrekey(update);
      }
      if (!confirmed.ok() && (force || confirmed.status().code() != Code::kFailedPrecondition)) {
        return confirmed.status().WithContext("prekey rotation");
      }
      if (confirmed.ok()) {
        HF_RETURN_IF_ERROR(device.CompletePrekeyRotation(*confirmed, NowMs()));
        dirty = true;
      } else {
        err_ << "holdfast-client: warning: prekey rotation refused, will retry: "
             << ForTerminal(confirmed.status().message()) << "\n";
      }
    }
    return dirty ? Save(device) : Status::Ok();
  }

  // Verifies the conversation's devices, prints what changed and saves.
  Status Observe(Device& device, const wire::ConversationInfo& conversation) {
    HF_ASSIGN_OR_RETURN(auto notices, device.ObserveConversation(conversation, NowMs()));
    for (const auto& n : notices) PrintNotice(n);
    return Save(device);
  }

  void PrintNotice(const Notice& n) {
    out_ << "notice (" << ForTerminal(n.conversation_id.empty() ? "account" : n.conversation_id)
         << "): " << ForTerminal(n.text) << "\n";
  }

  int Group() {
    if (args_.positional.empty()) return Usage("group needs create, add, remove or show");
    const std::string sub = args_.positional[0];
    if (auto u = sub == "create" ? OnlyOptions({"title", "members"}) : OnlyOptions({})) return *u;
    std::vector<std::string> users;
    std::string id;
    if (sub == "create") {
      if (args_.positional.size() != 1) return Usage("group create takes options only");
      auto members = args_.Get("members");
      if (!args_.Get("title") || !members) return Usage("group create needs --title and --members");
      users = SplitList(*members);
    } else if (sub == "add" || sub == "remove") {
      if (args_.positional.size() != 3) return Usage("group " + sub + " ID USER[,USER...]");
      id = args_.positional[1];
      users = SplitList(args_.positional[2]);
      if (users.empty()) return Usage("group " + sub + " names no user");
    } else if (sub == "show") {
      if (args_.positional.size() != 2) return Usage("group show ID");
      id = args_.positional[1];
    } else {
      return Usage("unknown group command \"" + sub + "\"");
    }
    auto device = LoadDevice();
    if (!device.ok()) return Fail(device.status());
    auto session = Login(*device, nullptr);
    if (!session.ok()) return Fail(session.status());
    Result<wire::ConversationInfo> info = Status::Internal("unreachable");
    if (sub == "create") {
      info = session->CreateGroup(*args_.Get("title"), users);
    } else if (sub == "add") {
      info = session->ChangeMembers(id, users, {});
    } else if (sub == "remove") {
      info = session->ChangeMembers(id, {}, users);
    } else {
      info = session->GetConversation(id);
    }
    if (!info.ok()) return Fail(info.status());
    if (Status s = Observe(*device, *info); !s.ok()) return Fail(s);
    (void)session->Close();
    out_ << "group " << ForTerminal(info->conversation_id()) << " \"" << ForTerminal(info->title())
         << "\" members";
    for (const auto& m : info->members()) out_ << " " << ForTerminal(m);
    out_ << " (version " << info->membership_version() << ")\n";
    return kExitOk;
  }

  int RotatePrekey() {
    if (auto u = OnlyOptions({})) return *u;
    if (!args_.positional.empty()) return Usage("rotate-prekey takes no arguments");
    auto device = LoadDevice();
    if (!device.ok()) return Fail(device.status());
    wire::Authenticated auth;
    auto session = Login(*device, &auth);
    if (!session.ok()) return Fail(session.status());
    if (Status s = MaintainPrekeys(*device, *session, auth, /*force=*/true); !s.ok()) return Fail(s);
    (void)session->Close();
    out_ << "prekey " << protocol::Fingerprint(AsBytes(device->profile().prekey.public_key()))
         << " created " << FormatTime(device->profile().prekey.created_at_ms()) << "\n";
    return kExitOk;
  }

  // The gateway must open exactly the conversation that was asked for: the
  // message is sealed to every member it lists.
  static Status CheckMembers(const wire::ConversationInfo& conversation,
                             const std::vector<std::string>& requested, const std::string& me) {
    std::set<std::string> want(requested.begin(), requested.end());
    std::set<std::string> got(conversation.members().begin(), conversation.members().end());
    want.erase(me);
    got.erase(me);
    if (want != got) {
      std::string listed;
      for (const auto& m : got) listed += (listed.empty() ? "" : ",") + m;
      return Status::PermissionDenied("gateway opened a conversation with members [" + listed +
                                      "], not the ones requested");
    }
    return Status::Ok();
  }

  void Report(const wire::Deliver& d, const Result<ReceivedMessage>& r, bool json) {
    ReceivedMessage shown;
    std::string reason;
    if (r.ok()) {
      shown = *r;
    } else {
      reason = r.status().message();
      if (auto h = UnverifiedHeader(d)) {
        shown.message_id.assign(h->message_id().begin(), h->message_id().end());
        shown.conversation_id = h->conversation_id();
        shown.sender_user = h->sender_user();
        shown.sender_device.assign(h->sender_device().begin(), h->sender_device().end());
        shown.sent_at_ms = h->sent_at_ms();
      }
    }
    if (json) {
      Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
      o.set("message_id", ToHex(shown.message_id));
      o.set("conversation_id", shown.conversation_id);
      o.set("sender_user", shown.sender_user);
      o.set("sender_device", ToHex(shown.sender_device));
      o.set("sent_at_ms", static_cast<Poco::Int64>(shown.sent_at_ms));
      o.set("text", shown.text);
      o.set("resend_of", ToHex(shown.resend_of));
      o.set("restored", shown.restore_request_id != 0);
      o.set("restore_request_id", static_cast<Poco::UInt64>(shown.restore_request_id));
      o.set("status", r.ok() ? "ok" : "rejected");
      o.set("reason", reason);
      Poco::JSON::Array notices;
      for (const auto& n : shown.notices) {
        Poco::JSON::Object no(Poco::JSON_PRESERVE_KEY_ORDER);
        no.set("kind", std::string(NoticeKindName(n.kind)));
        no.set("user", n.user);
        no.set("text", n.text);
        notices.add(no);
      }
      o.set("notices", notices);
      o.stringify(out_);
      out_ << "\n";
      return;
    }
    for (const auto& n : shown.notices) PrintNotice(n);
    out_ << "[" << FormatTime(shown.sent_at_ms) << "] " << ForTerminal(shown.conversation_id)
         << " " << ForTerminal(shown.sender_user) << ": ";
    if (r.ok()) {
      out_ << ForTerminal(shown.text);
      if (shown.restore_request_id != 0) {
        out_ << " (restored under request " << shown.restore_request_id << ")";
      }
      out_ << "\n";
    } else {
      out_ << "REJECTED message " << ToHex(shown.message_id) << " (" << ForTerminal(reason)
           << ")\n";
    }
  }

  // Shows the history-restore notices the gateway pushed (9.12), in the
  // conversations they concern, then acknowledges them: a notice not shown
  // comes again at the next login.
  Status ShowRestoreNotices(const Device& device, Session& session, bool json) {
    std::vector<uint64_t> shown;
    while (auto restored = session.TakeRestoreNotice()) {
      for (const Notice& n : device.RestoreNotices(*restored)) {
        if (!json) {
          PrintNotice(n);
          continue;
        }
        Poco::JSON::Object o(Poco::JSON_PRESERVE_KEY_ORDER);
        o.set("status", "notice");
        o.set("kind", std::string(NoticeKindName(n.kind)));
        o.set("conversation_id", n.conversation_id);
        o.set("user", n.user);
        o.set("request_id", static_cast<Poco::UInt64>(restored->request_id()));
        o.set("target_device", ToHex(n.device_id));
        o.set("text", n.text);
        o.stringify(out_);
        out_ << "\n";
      }
      shown.push_back(restored->notice_id());
    }
    out_.flush();
    return session.AckRestoreNotices(shown);
  }

  // Answers the resend requests the gateway pushed: seals each message
  // again for the devices named, submits it, then closes the request. A
  // request that can never be answered (a message not in the sent log, a
  // device refused, a refused submit) is closed too; one whose submit the
  // gateway could not store stays open and comes again at the next login.
  Status AnswerResendRequests(Device& device, Session& session, bool json) {
    std::vector<uint64_t> done;
    while (auto request = session.TakeResendRequest()) {
      const std::string original = ToHex(AsBytes(request->message_id()));
      auto envelope = device.PrepareResend(*request, NowMs());
      if (!envelope.ok()) {
        err_ << "holdfast-client: resend of " << original
             << " refused: " << ForTerminal(envelope.status().message()) << "\n";
        done.push_back(request->request_id());
        continue;
      }
      auto ack = session.Submit(*envelope);
      if (!ack.ok()) {
        const std::string& why = ack.status().message();
        if (ack.status().code() != Code::kFailedPrecondition ||
            why.find("(unavailable)") != std::string::npos) {
          HF_RETURN_IF_ERROR(session.AckResendRequests(done));
          return ack.status().WithContext("resend");
        }
        err_ << "holdfast-client: resend of " << original << " refused: " << ForTerminal(why)
             << "\n";
      } else if (!json) {
        out_ << "resent " << original << " as " << ToHex(AsBytes(ack->message_id())) << " for "
             << request->devices_size() << " new device(s) in "
             << ForTerminal(request->conversation_id()) << "\n";
      }
      done.push_back(request->request_id());
    }
    return session.AckResendRequests(done);
  }

  int Receive(bool listen) {
    if (auto u = listen ? OnlyOptions({"json"}) : OnlyOptions({"json", "wait"})) return *u;
    if (!args_.positional.empty()) return Usage(args_.command + " takes no arguments");
    const bool json = args_.flags.count("json") != 0;
    milliseconds idle = std::chrono::seconds(1);
    if (auto w = args_.Get("wait")) {
      char* end = nullptr;
      double seconds = std::strtod(w->c_str(), &end);
      if (w->empty() || *end != '\0' || !std::isfinite(seconds) || seconds < 0 ||
          seconds > 86400) {
        return Usage("--wait takes a number of seconds between 0 and 86400");
      }
      idle = milliseconds(static_cast<int64_t>(seconds * 1000));
    }
    std::optional<StopSignals> signals;
    if (listen) signals.emplace();

    auto device = LoadDevice();
    if (!device.ok()) return Fail(device.status());
    wire::Authenticated auth;
    auto session = Login(*device, &auth);
    if (!session.ok() && !(listen && ShouldReconnect(session.status()))) {
      return Fail(session.status());
    }
    if (session.ok()) {
      if (Status s = MaintainPrekeys(*device, *session, auth); !s.ok()) return Fail(s);
    }
    // listen outlives gateway restarts and database outages: on a
    // connection-level failure it logs in again after a capped, jittered
    // exponential backoff. Deliveries not yet acknowledged come again on
    // the new connection; the seen-set drops the repeats.
    Backoff backoff;
    auto reconnect = [&](const Status& why) -> bool {
      for (Status last = why;;) {
        const milliseconds wait = backoff.Next();
        err_ << "holdfast-client: " << last.message() << "; reconnecting in " << wait.count()
             << " ms" << std::endl;
        for (auto until = std::chrono::steady_clock::now() + wait;
             !g_stop && std::chrono::steady_clock::now() < until;) {
          std::this_thread::sleep_for(std::min<milliseconds>(
              milliseconds(100), std::chrono::duration_cast<milliseconds>(
                                     until - std::chrono::steady_clock::now())));
        }
        if (g_stop) return false;
        session = Login(*device, &auth);
        if (session.ok()) {
          err_ << "holdfast-client: reconnected after " << backoff.attempts() << " attempt(s)"
               << std::endl;
          backoff.Reset();
          return true;
        }
        last = session.status();
        if (!ShouldReconnect(last)) return false;
      }
    };
    if (!session.ok() && !reconnect(session.status())) {
      return g_stop ? kExitOk : Fail(session.status());
    }

    uint64_t processed = 0;
    std::vector<uint64_t> batch;
    bool dirty = false;
    // Output and the seen-set are durable before the gateway may drop a delivery.
    auto flush = [&]() -> Status {
      if (batch.empty()) return Status::Ok();
      out_.flush();
      if (dirty) HF_RETURN_IF_ERROR(Save(*device));
      dirty = false;
      Status s = session->Ack(batch);
      batch.clear();
      return s;
    };

    for (;;) {
      if (listen && g_stop) break;
      if (Status s = AnswerResendRequests(*device, *session, json); !s.ok()) return Fail(s);
      if (Status s = ShowRestoreNotices(*device, *session, json); !s.ok()) return Fail(s);
      auto next = session->NextDelivery(milliseconds(0));
      if (next.ok() && !*next) {
        if (Status s = flush(); !s.ok()) return Fail(s);
        milliseconds wait = listen                ? kListenPoll
                            : processed < auth.pending() ? kPendingTimeout
                                                         : idle;
        next = session->NextDelivery(wait);
        if (next.ok() && !*next) {
          if (listen || session->HasResendRequests()) continue;
          if (processed < auth.pending()) {
            return Fail(Status::Unavailable(
                "gateway announced " + std::to_string(auth.pending()) +
                " pending deliveries but sent " + std::to_string(processed)));
          }
          break;
        }
      }
      if (!next.ok()) {
        if (listen && g_stop) break;
        if (listen && ShouldReconnect(next.status())) {
          if (!reconnect(next.status())) {
            if (g_stop) break;
            return Fail(session.status());
          }
          continue;
        }
        return Fail(next.status());
      }
      const wire::Deliver& d = **next;
      ++processed;
      batch.push_back(d.delivery_id());
      auto opened = device->OpenDelivery(d, NowMs());
      if (opened.ok() && !device->MarkReceived(*opened)) continue;
      if (opened.ok()) {
        dirty = true;
        if (!d.archive_notice().empty() && device->MarkNoticeShown(opened->conversation_id)) {
          opened->notices.insert(opened->notices.begin(),
                                 Notice{Notice::Kind::kArchived, opened->conversation_id, {}, {},
                                        d.archive_notice()});
        }
      } else if (auto report = ReportFor(d, opened.status())) {
        // Recorded by the gateway for the compliance team; the delivery is
        // still acknowledged, since it can never open.
        if (auto sent = session->Report(*report); !sent.ok()) return Fail(sent.status());
      }
      Report(d, opened, json);
      if (batch.size() >= kAckBatch) {
        if (Status s = flush(); !s.ok()) {
          if (!listen || !ShouldReconnect(s)) return Fail(s);
          if (!reconnect(s)) {
            if (g_stop) break;
            return Fail(session.status());
          }
        }
      }
    }
    if (Status s = flush(); !s.ok()) return Fail(s);
    if (Status s = ShowRestoreNotices(*device, *session, json); !s.ok()) return Fail(s);
    (void)session->Close();
    return kExitOk;
  }

  int History() {
    if (auto u = OnlyOptions({"conversation", "limit", "json"})) return *u;
    if (!args_.positional.empty()) return Usage("history takes options only");
    auto conversation = args_.Get("conversation");
    if (!conversation || conversation->empty()) return Usage("history needs --conversation ID");
    size_t limit = 50;
    if (auto l = args_.Get("limit")) {
      char* end = nullptr;
      const unsigned long n = std::strtoul(l->c_str(), &end, 10);
      if (l->empty() || *end != '\0' || n == 0 || n > 10000) {
        return Usage("--limit takes a number between 1 and 10000");
      }
      limit = n;
    }
    const bool json = args_.flags.count("json") != 0;
    auto device = LoadDevice();
    if (!device.ok()) return Fail(device.status());
    auto session = Login(*device, nullptr);
    if (!session.ok()) return Fail(session.status());

    // Pages come newest first; print oldest first.
    std::vector<wire::HistoryEntry> entries;
    wire::HistoryCursor before;
    while (entries.size() < limit) {
      const auto want = static_cast<uint32_t>(std::min<size_t>(limit - entries.size(), 200));
      auto page = session->GetHistory(*conversation, before, want);
      if (!page.ok()) return Fail(page.status());
      for (auto& e : *page->mutable_entries()) entries.push_back(std::move(e));
      if (!page->more() || page->entries_size() == 0) break;
      before = page->next();
    }
    if (Status s = ShowRestoreNotices(*device, *session, json); !s.ok()) return Fail(s);
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      wire::Deliver d;
      *d.mutable_envelope() = it->envelope();
      auto opened = device->OpenHistoryEntry(*it, NowMs());
      if (!opened.ok() && opened.status().code() == Code::kNotFound) {
        opened = Status::NotFound("not sealed to this device");
      }
      Report(d, opened, json);
    }
    if (Status s = Save(*device); !s.ok()) return Fail(s);
    (void)session->Close();
    return kExitOk;
  }

  int WhoAmI() {
    if (auto u = OnlyOptions({})) return *u;
    if (!args_.positional.empty()) return Usage("whoami takes no arguments");
    auto device = LoadDevice(/*require_registered=*/false);
    if (!device.ok()) return Fail(device.status());
    const Profile& profile = device->profile();
    out_ << "user: " << ForTerminal(profile.user) << "\n"
         << "device: " << (profile.device_id.empty() ? "(unregistered)" : ToHex(profile.device_id))
         << "\n"
         << "server: " << ForTerminal(profile.server_url) << "\n"
         << "org: " << ForTerminal(profile.org) << "\n"
         << "keys: "
         << (store_->encrypted() ? "encrypted (" + std::string(store_->scheme()) + ")"
                                 : std::string("UNENCRYPTED (--insecure-plaintext-keys)"))
         << "\n";
    return kExitOk;
  }

  std::ostream& out_;
  std::ostream& err_;
  Args args_;
  fs::path dir_;
  // How the loaded or new profile's keys are kept; set before any save.
  std::optional<KeyStore> store_;
};

}  // namespace

int RunClientCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  return Cli(out, err).Run(argc, argv);
}

}  // namespace holdfast::client
