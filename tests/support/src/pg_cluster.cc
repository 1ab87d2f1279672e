#include "holdfast/testing/pg_cluster.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

extern char** environ;

namespace holdfast::testing {
namespace {

std::string ScriptPath() { return std::string(HOLDFAST_SOURCE_DIR) + "/scripts/pg-cluster"; }

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

}  // namespace

Result<std::string> RunCommand(const std::vector<std::string>& argv) {
  if (argv.empty()) return Status::InvalidArgument("empty command");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Internal(Errno("pipe2"));
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.Close();
  if (rc != 0) return Status::Internal("posix_spawn " + argv[0] + ": " + std::strerror(rc));

  std::string output;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n > 0) {
      output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return Status::Internal(Errno("waitpid"));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    return Status::Internal(cmd + " failed (status " + std::to_string(wstatus) + "): " + output);
  }
  return output;
}

Result<int> PickFreeLoopbackPort() {
  Fd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return Status::Internal(Errno("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Internal(Errno("bind"));
  }
  socklen_t len = sizeof addr;
  if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Status::Internal(Errno("getsockname"));
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

Result<std::unique_ptr<TempPostgres>> TempPostgres::Create() {
  std::string tmpl = "/tmp/holdfast-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::Unavailable(Errno("mkdtemp"));
  if (::chmod(tmpl.c_str(), 0755) != 0) {
    Status s = Status::Unavailable(Errno("chmod"));
    std::filesystem::remove_all(tmpl);
    return s;
  }
  auto port = PickFreeLoopbackPort();
  if (!port.ok()) {
    std::filesystem::remove_all(tmpl);
    return port.status();
  }
  // From here the destructor removes the directory.
  std::unique_ptr<TempPostgres> pg(new TempPostgres(tmpl + "/cluster", *port));
  HF_RETURN_IF_ERROR(pg->Script("init", std::to_string(*port)));
  HF_RETURN_IF_ERROR(pg->Script("start"));
  return pg;
}

TempPostgres::~TempPostgres() {
  (void)Script("stop", "immediate");
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(dir_).parent_path(), ec);
}

std::string TempPostgres::conninfo(const std::string& dbname) const {
  std::string quoted;
  for (char c : dbname) {
    if (c == '\'' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=holdfast dbname='" + quoted +
         "' connect_timeout=10";
}

Status TempPostgres::Script(const std::string& command, const std::string& arg) {
  std::vector<std::string> argv = {ScriptPath(), command, dir_};
  if (!arg.empty()) argv.push_back(arg);
  auto out = RunCommand(argv);
  if (!out.ok()) return Status::Unavailable(out.status().message());
  return Status::Ok();
}

Status TempPostgres::CreateDatabase(const std::string& name) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo().c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Unavailable(PQerrorMessage(conn.get()));
  }
  std::unique_ptr<char, decltype(&PQfreemem)> ident(
      PQescapeIdentifier(conn.get(), name.data(), name.size()), &PQfreemem);
  if (!ident) return Status::InvalidArgument(PQerrorMessage(conn.get()));
  std::string sql = std::string("CREATE DATABASE ") + ident.get();
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
    std::string message = PQerrorMessage(conn.get());
    if (state != nullptr && std::strcmp(state, "42P04") == 0) {
      return Status::AlreadyExists(message);
    }
    return Status::Unavailable(message);
  }
  return Status::Ok();
}

Result<std::string> TempPostgres::CreateFreshDatabase() {
  std::string name = "test_" + std::to_string(++databases_);
  HF_RETURN_IF_ERROR(CreateDatabase(name));
  return conninfo(name);
}

Status TempPostgres::StopImmediate() { return Script("stop", "immediate"); }

Status TempPostgres::Start() { return Script("start"); }

}  // namespace holdfast::testing
