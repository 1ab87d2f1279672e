#include <iostream>

#include "holdfast/client/cli.h"

int main(int argc, char** argv) {
  return holdfast::client::RunClientCli(argc, argv, std::cout, std::cerr);
}
