"""A whole Holdfast deployment in a temporary directory, for integration tests.

Everything is real: a PostgreSQL cluster started by scripts/pg-cluster on a
free loopback port, a SoftHSM2 token made by scripts/lib.sh, the
holdfast-gateway daemon with ports chosen by the kernel, and holdfast-admin /
holdfast-client processes. Binary paths come from the environment that CTest
sets (HOLDFAST_GATEWAY, HOLDFAST_ADMIN, HOLDFAST_CLIENT, HOLDFAST_SOURCE_DIR).
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import ssl
import struct
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


def texts(messages):
    """The texts of the messages `recv --json` printed that opened."""
    return [m["text"] for m in messages if m["status"] == "ok"]


def totp(secret_b32, step):
    """RFC 6238 with SHA-1, 6 digits, 30-second steps."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1000000:06d}"


def now_step():
    return int(time.time()) // 30


class OfficerCodes:
    """The TOTP secrets of admin API officers, and a code for each sign-in
    or step-up for a time step the officer has not used yet (the gateway
    accepts one step of drift either way, each step once)."""

    def __init__(self):
        self.secrets = {}
        self.used_steps = {}

    def code(self, name):
        step = max(now_step(), self.used_steps.get(name, -1) + 1)
        if step > now_step() + 1:
            time.sleep(30 - time.time() % 30 + 1)
            step = max(now_step(), self.used_steps.get(name, -1) + 1)
        self.used_steps[name] = step
        return totp(self.secrets[name], step)


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


def launch_gateway(config, ports_file, log_path):
    """Starts holdfast-gateway on `config` and waits for its ports file.
    Returns (process, client_port, admin_port); raises with the log's tail
    if the process exits or does not start within 30 s."""
    if os.path.exists(ports_file):
        os.remove(ports_file)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([GATEWAY, "--config", config], stdout=log,
                                   stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError("gateway exited:\n" + tail(log_path))
        if os.path.exists(ports_file):
            with open(ports_file) as f:
                ports = json.load(f)
            return process, ports["client"], ports["admin"]
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=30)
    raise AssertionError("gateway did not start:\n" + tail(log_path))


def tail(path, size=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""


class Node:
    """A further gateway process of a Deployment, on the same database and
    HSM: its configuration differs from the deployment's only in the listen
    ports, gateway.node_id and ports_file."""

    def __init__(self, deployment, node_id, index):
        self.d = deployment
        self.node_id = node_id
        self.dir = os.path.join(deployment.dir, "nodes", f"{index}-{node_id}")
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "holdfast.yaml")
        self.ports_file = os.path.join(self.dir, "ports.json")
        self.log_path = os.path.join(self.dir, "gateway.log")
        deployment.write_config(self.config, self.ports_file, node_id)
        self.process = None

    def start(self):
        self.process, self.client_port, self.admin_port = launch_gateway(
            self.config, self.ports_file, self.log_path)
        self.server = f"wss://127.0.0.1:{self.client_port}/v1"

    def run_until_exit(self, timeout=30):
        """Runs the gateway expecting it to refuse to start; returns its
        exit status and log."""
        with open(self.log_path, "ab") as log:
            result = subprocess.run([GATEWAY, "--config", self.config], stdout=log,
                                    stderr=subprocess.STDOUT, timeout=timeout)
        return result.returncode, self.log()

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def log(self):
        return tail(self.log_path)

    def https_get(self, path):
        return self.d.https_get(path, port=self.admin_port)


class Deployment:
    def __init__(self, name="it", node_id=None):
        self.dir = tempfile.mkdtemp(prefix=f"holdfast-{name}-")
        os.chmod(self.dir, 0o755)
        self.gateway = None
        self.nodes = []
        self.pg_dir = os.path.join(self.dir, "pg")
        self.pg_port = free_port()
        run([PG_CLUSTER, "init", self.pg_dir, str(self.pg_port)])
        run([PG_CLUSTER, "start", self.pg_dir])
        run([PG_CLUSTER, "createdb", self.pg_dir, "holdfast"])
        self.conninfo = f"host=127.0.0.1 port={self.pg_port} dbname=holdfast user=holdfast"

        hsm_dir = os.path.join(self.dir, "hsm")
        tls_dir = os.path.join(self.dir, "tls")
        self.module = run(["bash", "-c", f'source "{LIB_SH}" && make_softhsm_dir "$1" && '
                           f'make_tls_cert "$2" && softhsm_module', "_", hsm_dir, tls_dir]).stdout.strip()
        self.ca = os.path.join(tls_dir, "gateway.pem")
        self.ports_file = os.path.join(self.dir, "ports.json")
        shutil.copy(os.path.join(SOURCE_DIR, "deploy", "policy.yaml"),
                    os.path.join(self.dir, "policy.yaml"))
        self.hsm_dir = hsm_dir
        self.config = os.path.join(self.dir, "holdfast.yaml")
        self.write_config(self.config, self.ports_file, node_id)
        self.admin("hsm", "init-token")
        # Key ceremonies are run by an officer with the role key_custodian.
        self.admin("officer", "add", KEY_CUSTODIAN, "--role", "key_custodian")
        self.admin("init", "--as", KEY_CUSTODIAN)

    def write_config(self, path, ports_file, node_id=None):
        node = f"\n  node_id: {node_id}" if node_id else ""
        with open(path, "w") as f:
            f.write(f"""org: "Integration Test Org"
state_dir: {self.dir}
database:
  conninfo: "{self.conninfo}"
hsm:
  module: {self.module}
  token_label: holdfast
  softhsm2_conf: {self.hsm_dir}/softhsm2.conf
gateway:
  listen: 127.0.0.1:{free_port()}{node}
admin:
  listen: 127.0.0.1:{free_port()}
ports_file: {ports_file}
""")

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
        self.gateway, self.client_port, self.admin_port = launch_gateway(
            self.config, self.ports_file, os.path.join(self.dir, "gateway.log"))
        self.server = f"wss://127.0.0.1:{self.client_port}/v1"

    def add_node(self, node_id):
        """A further gateway with its own config (not started)."""
        node = Node(self, node_id, len(self.nodes))
        self.nodes.append(node)
        return node

    def kill_gateway(self, sig=signal.SIGKILL):
        if self.gateway and self.gateway.poll() is None:
            self.gateway.send_signal(sig)
            self.gateway.wait(timeout=30)
        self.gateway = None

    def gateway_log(self):
        return tail(os.path.join(self.dir, "gateway.log"))

    def close(self):
        for node in self.nodes:
            node.stop()
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

    def https_get(self, path, port=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        url = f"https://127.0.0.1:{port or self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def add_officer(self, name, role, password, codes):
        """Registers an officer who can sign in to the admin API with
        `password` and a TOTP code; the secret goes into `codes`."""
        self.admin("officer", "add", name, "--role", role)
        run([ADMIN, "--config", self.config, "officer", "set-password", name], input=password + "\n")
        out = self.admin("officer", "totp", name).stdout
        codes.secrets[name] = out.split(": ", 1)[1].split()[0]

    def add_user(self, user, server=None):
        self.admin("user", "add", user)
        return self.enroll(user, server=server)

    def enrollment_code(self, user):
        out = self.admin("user", "enroll", user).stdout
        return out.split(":", 1)[1].split()[0]

    def enroll(self, user, profile=None, certify_with=None, check=True, server=None):
        """Registers a device of `user` in profile `profile` (default: the
        user's name), connecting through `server` (default: the deployment's
        gateway) from then on. A further device of a user is certified by
        the master key held in the profile `certify_with`."""
        args = ["register", "--server", server or self.server, "--ca", self.ca, "--user", user,
                "--code", self.enrollment_code(user)]
        if certify_with:
            args += ["--certify-with", self.profile(certify_with)]
        return self.client(profile or user, *args, check=check)

    def recv(self, name, wait="1"):
        out = self.client(name, "recv", "--json", "--wait", wait).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]
