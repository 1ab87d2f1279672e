# Shared by scripts/up, scripts/test and scripts/down. Sourced, not run.

HOLDFAST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOLDFAST_BUILD=${HOLDFAST_BUILD:-$HOLDFAST_ROOT/build}

# Debian packages the build, the daemon and the test suite need.
HOLDFAST_PACKAGES=(
  build-essential cmake pkg-config ca-certificates
  libssl-dev openssl libpq-dev postgresql postgresql-client
  libpoco-dev libyaml-cpp-dev prometheus-cpp-dev libboost-dev
  libprotobuf-dev protobuf-compiler libp11-kit-dev
  softhsm2 opensc libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-protobuf python3-cryptography python3-yaml python3-jsonschema
  prometheus curl procps
  libargon2-dev
  libldap-dev slapd ldap-utils
  clang libclang-rt-14-dev
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs whatever of HOLDFAST_PACKAGES (plus any extra names given) is
# missing. Does nothing, and needs no network, when all are present.
install_packages() {
  local missing=() p
  for p in "${HOLDFAST_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "all ${#HOLDFAST_PACKAGES[@]} Debian packages present"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures and builds; extra arguments are build targets.
build() {
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  log "building in $HOLDFAST_BUILD"
  cmake -S "$HOLDFAST_ROOT" -B "$HOLDFAST_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  if (($#)); then
    local t targets=()
    for t in "$@"; do targets+=(--target "$t"); done
    cmake --build "$HOLDFAST_BUILD" -j"$jobs" "${targets[@]}"
  else
    cmake --build "$HOLDFAST_BUILD" -j"$jobs"
  fi
}

# Finds the SoftHSM2 PKCS#11 module Debian installed.
softhsm_module() {
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
    [[ -e $m ]] && { echo "$m"; return; }
  done
  die "libsofthsm2.so not found (install softhsm2)"
}

# Self-signed P-256 certificate for the gateway and admin plane, valid for
# localhost and 127.0.0.1.
make_tls_cert() {
  local dir=$1
  mkdir -p "$dir"
  [[ -s $dir/gateway.pem && -s $dir/gateway.key ]] && return
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 825 \
    -subj "/O=Holdfast/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/gateway.key" -out "$dir/gateway.pem" 2>/dev/null
  chmod 600 "$dir/gateway.key"
}

# A SoftHSM2 token directory in DIR/tokens with DIR/softhsm2.conf pointing
# there, and random PINs (mode 0600) in DIR/so.pin (both tokens' SO),
# DIR/user.pin (the archive token) and DIR/enrollment.pin (the enrollment
# token, the only one the gateway logs in to). The tokens themselves are
# made by `holdfast-admin hsm init-token`, which reads the PINs from these
# files: a PIN never appears on a command line. Existing files are kept.
make_softhsm_dir() {
  local dir=$1
  mkdir -p "$dir/tokens"
  chmod 700 "$dir" "$dir/tokens"
  if [[ ! -s $dir/softhsm2.conf ]]; then
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
      "$dir/tokens" >"$dir/softhsm2.conf"
  fi
  (umask 077
   [[ -s $dir/user.pin ]] || openssl rand -hex 16 >"$dir/user.pin"
   [[ -s $dir/enrollment.pin ]] || openssl rand -hex 16 >"$dir/enrollment.pin"
   [[ -s $dir/so.pin ]] || openssl rand -hex 16 >"$dir/so.pin")
}
