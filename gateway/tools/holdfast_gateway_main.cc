// holdfast-gateway: the daemon. Poco's ServerApplication is the process
// shell (options, signals, --daemon); everything else is holdfast::gateway.
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/ServerApplication.h>

#include <sys/resource.h>

#include <iostream>


#include "holdfast/gateway/config.h"
#include "holdfast/gateway/gateway.h"

namespace {

using Poco::Util::Option;
using Poco::Util::OptionSet;

class GatewayApp final : public Poco::Util::ServerApplication {
 protected:
  void defineOptions(OptionSet& options) override {
    ServerApplication::defineOptions(options);
    options.addOption(Option("config", "c", "configuration file (YAML)")
                          .required(false).repeatable(false).argument("FILE")
                          .binding("holdfast.config"));
    options.addOption(Option("help", "h", "show this help").required(false).repeatable(false)
                          .callback(Poco::Util::OptionCallback<GatewayApp>(this, &GatewayApp::Help)));
  }

  void Help(const std::string&, const std::string&) {
    Poco::Util::HelpFormatter f(options());
    f.setCommand(commandName());
    f.setUsage("[--config FILE]");
    f.setHeader("Holdfast compliance messaging gateway.");
    f.format(std::cout);
    stopOptionsProcessing();
    help_ = true;
  }

  int main(const ArgVec&) override {
    if (help_) return EXIT_OK;
    const std::string path = config().getString("holdfast.config", "/etc/holdfast/holdfast.yaml");
    auto cfg = holdfast::gateway::Config::Load(path);
    if (!cfg.ok()) {
      std::cerr << "holdfast-gateway: " << cfg.status().ToString() << "\n";
      return EXIT_CONFIG;
    }
    holdfast::gateway::ApplyProcessEnvironment(*cfg);
    // Every client connection is a descriptor: take the hard limit the
    // service manager allows (LimitNOFILE=), not the 1024 soft default.
    if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    auto gw = holdfast::gateway::Gateway::Create(*cfg);
    if (!gw.ok()) {
      std::cerr << "holdfast-gateway: " << gw.status().ToString() << "\n";
      return EXIT_UNAVAILABLE;
    }
    if (auto s = (*gw)->Start(); !s.ok()) {
      std::cerr << "holdfast-gateway: " << s.ToString() << "\n";
      return EXIT_UNAVAILABLE;
    }
    std::cerr << "holdfast-gateway: clients on wss://" << cfg->gateway.listen.host << ":"
              << (*gw)->client_port() << "/v1, admin plane on https://" << cfg->admin.listen.host
              << ":" << (*gw)->admin_port() << ", node id " << cfg->gateway.node_id << std::endl;
    waitForTerminationRequest();
    std::cerr << "holdfast-gateway: stopping; draining ingest" << std::endl;
    (*gw)->Stop();
    return EXIT_OK;
  }

 private:
  bool help_ = false;
};

}  // namespace

POCO_SERVER_MAIN(GatewayApp)
