"""A real OpenLDAP slapd in a temporary directory, for directory sign-in tests.

It listens on free loopback ports (plain LDAP, which takes StartTLS, and
LDAPS) with a certificate from scripts/lib.sh make_tls_cert (valid for
localhost and 127.0.0.1), and never touches a system slapd. The entries are
loaded with slapadd before the first start, so no network write is needed.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import LIB_SH, free_port, run

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SLAPPASSWD = shutil.which("slappasswd") or "/usr/sbin/slappasswd"

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=holdfast-gateway,ou=services,{SUFFIX}"
ENROLL_GROUP = f"cn=holdfast-users,{GROUPS}"
CREATORS_GROUP = f"cn=holdfast-group-creators,{GROUPS}"

# user -> (display name, password)
USERS = {
    "alice": ("Alice Liddell", "alice-directory-password"),
    "bob": ("Bob Builder", "bob-directory-password"),
    "mallory": ("Mallory Outsider", "mallory-directory-password"),
    "dave": ("Dave Lister", "dave-directory-password"),
    "erin": ("Erin Brockovich", "erin-directory-password"),
    "frank": ("Frank (Search) Bind", "frank directory password, with ( ) * \\ characters"),
}
ENROLLERS = ["alice", "bob", "dave", "erin", "frank"]
CREATORS = ["alice"]


def user_dn(user):
    return f"uid={user},{PEOPLE}"


class LdapServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="holdfast-slapd-")
        self.proc = None
        self.ldap_port = free_port()
        self.ldaps_port = free_port()
        # A second LDAPS listener on an address the certificate does not name.
        self.mismatch_port = free_port()
        self.root_password = "slapd root password"
        self.service_password = "gateway service account password"
        tls = os.path.join(self.dir, "tls")
        run(["bash", "-c", f'source "{LIB_SH}" && make_tls_cert "$1"', "_", tls])
        self.ca_file = os.path.join(tls, "gateway.pem")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data)
        self.conf = os.path.join(self.dir, "slapd.conf")
        with open(self.conf, "w") as f:
            f.write(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {tls}/gateway.pem
TLSCertificateKeyFile {tls}/gateway.key
database mdb
maxsize 67108864
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {self.hash(self.root_password)}
directory {self.data}
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
""")
        ldif = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
        for ou in ("people", "groups", "services"):
            ldif.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
        ldif.append(f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                    f"cn: holdfast-gateway\nuserPassword: {self.hash(self.service_password)}\n")
        for user, (display, password) in USERS.items():
            ldif.append(f"dn: {user_dn(user)}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {display}\n"
                        f"sn: {display.split()[-1]}\ndisplayName: {display}\n"
                        f"userPassword: {self.hash(password)}\n")
        for dn, cn, members in ((ENROLL_GROUP, "holdfast-users", ENROLLERS),
                                (CREATORS_GROUP, "holdfast-group-creators", CREATORS)):
            ldif.append(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n" +
                        "".join(f"member: {user_dn(u)}\n" for u in members))
        path = os.path.join(self.dir, "entries.ldif")
        with open(path, "w") as f:
            f.write("\n".join(ldif))
        run([SLAPADD, "-f", self.conf, "-l", path])
        self.start()

    @staticmethod
    def hash(password):
        return run([SLAPPASSWD, "-s", password]).stdout.strip()

    @property
    def ldap_url(self):
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self):
        # Not "localhost": libldap checks the certificate against the
        # machine's own host name for that.
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def mismatch_url(self):
        return f"ldaps://127.0.0.2:{self.mismatch_port}"

    def start(self):
        urls = (f"ldap://127.0.0.1:{self.ldap_port}/ ldaps://127.0.0.1:{self.ldaps_port}/ "
                f"ldaps://127.0.0.2:{self.mismatch_port}/")
        with open(os.path.join(self.dir, "slapd.log"), "ab") as log:
            # -d keeps slapd in the foreground, so the test owns the process.
            self.proc = subprocess.Popen([SLAPD, "-f", self.conf, "-h", urls, "-d", "0"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("slapd exited:\n" + self.log())
            if all(self._listening(host, port) for host, port in
                   (("127.0.0.1", self.ldap_port), ("127.0.0.1", self.ldaps_port),
                    ("127.0.0.2", self.mismatch_port))):
                return
            time.sleep(0.05)
        raise AssertionError("slapd did not start:\n" + self.log())

    @staticmethod
    def _listening(host, port):
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def set_password(self, user, password):
        """Resets a user's password as the directory administrator would."""
        run(["ldappasswd", "-x", "-H", self.ldap_url, "-D", ROOT_DN, "-w", self.root_password,
             "-s", password, user_dn(user)])

    def log(self):
        try:
            with open(os.path.join(self.dir, "slapd.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        self.stop()
        if os.environ.get("HOLDFAST_KEEP_TEST_DIR"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
