"""A whole Holdfast deployment in a temporary directory, for integration tests.

Everything is real: a PostgreSQL cluster started by scripts/pg-cluster on a
free loopback port, a SoftHSM2 token made by scripts/lib.sh, the
holdfast-gateway daemon with ports chosen by the kernel, and holdfast-admin /
holdfast-client processes. Binary paths come from the environment that CTest
sets (HOLDFAST_GATEWAY, HOLDFAST_ADMIN, HOLDFAST_CLIENT, HOLDFAST_SOURCE_DIR).
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

SOURCE_DIR = os.environ["HOLDFAST_SOURCE_DIR"]
GATEWAY = os.environ["HOLDFAST_GATEWAY"]
ADMIN = os.environ["HOLDFAST_ADMIN"]
CLIENT = os.environ["HOLDFAST_CLIENT"]
PG_CLUSTER = os.path.join(SOURCE_DIR, "scripts", "pg-cluster")
# Every test profile's private keys are encrypted under this passphrase;
# holdfast-client reads it from the environment.
TEST_PASSPHRASE = "holdfast integration test passphrase"
CLIENT_ENV = {**os.environ, "HOLDFAST_PASSPHRASE": TEST_PASSPHRASE}
LIB_SH = os.path.join(SOURCE_DIR, "scripts", "lib.sh")
# The officer every Deployment registers to run its key ceremonies.
KEY_CUSTODIAN = "kim"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, check=True, **kw):
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise AssertionError(
            f"command failed ({result.returncode}): {' '.join(map(str, args))}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


class Deployment:
    def __init__(self, name="it"):
        self.dir = tempfile.mkdtemp(prefix=f"holdfast-{name}-")
        os.chmod(self.dir, 0o755)
        self.gateway = None
        self.pg_dir = os.path.join(self.dir, "pg")
        self.pg_port = free_port()
        run([PG_CLUSTER, "init", self.pg_dir, str(self.pg_port)])
        run([PG_CLUSTER, "start", self.pg_dir])
        run([PG_CLUSTER, "createdb", self.pg_dir, "holdfast"])
        self.conninfo = f"host=127.0.0.1 port={self.pg_port} dbname=holdfast user=holdfast"

        hsm_dir = os.path.join(self.dir, "hsm")
        tls_dir = os.path.join(self.dir, "tls")
        module = run(["bash", "-c", f'source "{LIB_SH}" && make_softhsm_dir "$1" && '
                      f'make_tls_cert "$2" && softhsm_module', "_", hsm_dir, tls_dir]).stdout.strip()
        self.ca = os.path.join(tls_dir, "gateway.pem")
        self.ports_file = os.path.join(self.dir, "ports.json")
        shutil.copy(os.path.join(SOURCE_DIR, "deploy", "policy.yaml"),
                    os.path.join(self.dir, "policy.yaml"))
        self.config = os.path.join(self.dir, "holdfast.yaml")
        with open(self.config, "w") as f:
            f.write(f"""org: "Integration Test Org"
state_dir: {self.dir}
database:
  conninfo: "{self.conninfo}"
hsm:
  module: {module}
  token_label: holdfast
  softhsm2_conf: {hsm_dir}/softhsm2.conf
gateway:
  listen: 127.0.0.1:{free_port()}
admin:
  listen: 127.0.0.1:{free_port()}
ports_file: {self.ports_file}
""")
        self.admin("hsm", "init-token")
        # Key ceremonies are run by an officer with the role key_custodian.
        self.admin("officer", "add", KEY_CUSTODIAN, "--role", "key_custodian")
        self.admin("init", "--as", KEY_CUSTODIAN)

    # ------------------------------------------------------------ processes

    def admin(self, *args, check=True):
        return run([ADMIN, "--config", self.config, *args], check=check)

    def profile(self, name):
        return os.path.join(self.dir, "profiles", name)

    def client(self, name, *args, check=True, timeout=60):
        """Runs holdfast-client on the profile `name` (a user's first device
        is named after the user; further devices have names of their own)."""
        return run([CLIENT, "--profile", self.profile(name), *args], check=check, timeout=timeout,
                   env=CLIENT_ENV)

    def start_gateway(self):
        if os.path.exists(self.ports_file):
            os.remove(self.ports_file)
        with open(os.path.join(self.dir, "gateway.log"), "ab") as log:
            self.gateway = subprocess.Popen([GATEWAY, "--config", self.config],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.gateway.poll() is not None:
                raise AssertionError("gateway exited:\n" + self.gateway_log())
            if os.path.exists(self.ports_file):
                with open(self.ports_file) as f:
                    ports = json.load(f)
                self.client_port, self.admin_port = ports["client"], ports["admin"]
                self.server = f"wss://127.0.0.1:{self.client_port}/v1"
                return
            time.sleep(0.05)
        raise AssertionError("gateway did not start:\n" + self.gateway_log())

    def kill_gateway(self, sig=signal.SIGKILL):
        if self.gateway and self.gateway.poll() is None:
            self.gateway.send_signal(sig)
            self.gateway.wait(timeout=30)
        self.gateway = None

    def gateway_log(self):
        try:
            with open(os.path.join(self.dir, "gateway.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        self.kill_gateway(signal.SIGTERM)
        run([PG_CLUSTER, "stop", self.pg_dir, "immediate"], check=False)
        if os.environ.get("HOLDFAST_KEEP_TEST_DIR"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def psql(self, sql):
        out = run(["psql", self.conninfo, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]).stdout
        return [line for line in out.splitlines() if line]

    def https_get(self, path):
        ctx = ssl.create_default_context(cafile=self.ca)
        url = f"https://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def add_user(self, user):
        self.admin("user", "add", user)
        return self.enroll(user)

    def enrollment_code(self, user):
        out = self.admin("user", "enroll", user).stdout
        return out.split(":", 1)[1].split()[0]

    def enroll(self, user, profile=None, certify_with=None, check=True):
        """Registers a device of `user` in profile `profile` (default: the
        user's name). A further device of a user is certified by the master
        key held in the profile `certify_with`."""
        args = ["register", "--server", self.server, "--ca", self.ca, "--user", user,
                "--code", self.enrollment_code(user)]
        if certify_with:
            args += ["--certify-with", self.profile(certify_with)]
        return self.client(profile or user, *args, check=check)

    def recv(self, name, wait="1"):
        out = self.client(name, "recv", "--json", "--wait", wait).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]
