"""Test certificates made at run time with the openssl CLI: a CA, a server certificate for
127.0.0.1/localhost and client certificates, so no key material lives in the repository.

`make_certs(directory)` writes, in `directory`:
    ca.pem, ca.key             the test CA
    server.pem, server.key     the broker's certificate (SAN IP:127.0.0.1, DNS:localhost)
    keystore.pem               server key + certificate, the form ssl.keystore.location takes
    carol.pem, carol.key       a client certificate, subject O=Strom, CN=carol
    alice.pem, alice.key       a client certificate, subject O=Strom, OU=Clients, CN=alice.example
"""

import subprocess
from pathlib import Path

DAYS = "2"
SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name="ca", subject="/CN=Strom Test CA"):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", DAYS, "-subj", subject, cwd=d)


def issue(d, name, subject, ext, ca="ca"):
    """`name`.pem / `name`.key signed by the CA `ca`.pem / `ca`.key in `d`."""
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", DAYS, "-extfile", f"{name}.ext", cwd=d)


def keystore(d, name):
    """The PEM keystore (key then certificate) of `name`, as ssl.keystore.location takes it."""
    return (d / f"{name}.key").read_text() + (d / f"{name}.pem").read_text()


def make_certs(d):
    d = Path(d)
    make_ca(d)
    issue(d, "server", "/CN=localhost", SERVER_EXT)
    issue(d, "carol", "/O=Strom/CN=carol", CLIENT_EXT)
    issue(d, "alice", "/O=Strom/OU=Clients/CN=alice.example", CLIENT_EXT)
    (d / "keystore.pem").write_text(keystore(d, "server"))
    return d
