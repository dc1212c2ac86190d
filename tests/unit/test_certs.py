import datetime as dt
import shutil
import socket
import ssl
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_public_key, load_ssh_private_key

from certs import node_keys, tls
from tests.conftest import REPO


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "certs", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture
def made(tmp_path):
    tls.generate(tmp_path, ["example.org", "10.1.2.3"])
    return tmp_path


def test_init_writes_keys_0600_and_certificates_0644(made):
    modes = {p.name: p.stat().st_mode & 0o777 for p in made.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "server.pem": 0o644, "server.key": 0o600}


def test_chain_verifies_and_sans_cover_the_defaults_and_extras(made):
    assert tls.verify(made, ["superlink", "localhost", "127.0.0.1", "example.org", "10.1.2.3"]) == []
    server = tls.load_cert(made / "server.pem")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"superlink", "localhost", "example.org"} <= set(sans.get_values_for_type(x509.DNSName))


def test_a_certificate_from_another_ca_is_rejected(made, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    tls.generate(other, [])
    shutil.copy(other / "ca.crt", made / "ca.crt")
    problems = tls.verify(made)
    assert any("not signed by ca.crt" in p for p in problems)


def test_uncovered_host_and_expiry_are_reported_with_the_fix(made, tmp_path_factory):
    [problem] = tls.verify(made, ["nope.example"])
    assert '"nope.example"' in problem and "--san nope.example" in problem
    old = tmp_path_factory.mktemp("old")
    tls.generate(old, [], days=1, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    assert any("server.pem expired" in p for p in tls.verify(old))


def test_cli_refuses_to_overwrite_keeps_with_if_absent_replaces_with_force(made):
    before = (made / "server.key").read_bytes()
    refused = _cli("init", "--out", str(made))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--force" in refused.stderr
    kept = _cli("init", "--out", str(made), "--if-absent")
    assert kept.returncode == 0 and (made / "server.key").read_bytes() == before
    forced = _cli("init", "--out", str(made), "--force")
    assert forced.returncode == 0 and (made / "server.key").read_bytes() != before


def test_cli_verify_fails_for_an_uncovered_host(made):
    done = _cli("verify", "--dir", str(made), "--host", "elsewhere.org")
    assert done.returncode == 1 and 'does not cover host "elsewhere.org"' in done.stderr


def test_real_tls_handshake_accepts_our_ca_and_rejects_another(made, tmp_path_factory):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(made / "server.pem", made / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count):
        for _ in range(count):
            connection, _ = listener.accept()
            try:
                server_context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    good = ssl.create_default_context(cafile=made / "ca.crt")
    with socket.create_connection(("127.0.0.1", port)) as raw, good.wrap_socket(raw, server_hostname="localhost") as tls_sock:
        assert tls_sock.version() == "TLSv1.3"
    other = tmp_path_factory.mktemp("stranger")
    tls.generate(other, [])
    wrong = ssl.create_default_context(cafile=other / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            wrong.wrap_socket(raw, server_hostname="localhost")
    thread.join(5)
    listener.close()


def test_node_keys_are_p384_openssh_pairs_and_slots_can_be_added(tmp_path):
    node_keys.generate(tmp_path, 0, 2)
    private, public = node_keys.key_paths(tmp_path, 1)
    key = load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    assert load_ssh_public_key(public.read_bytes()).public_numbers() == key.public_key().public_numbers()
    assert private.stat().st_mode & 0o777 == 0o600
    before = private.read_bytes()
    assert len(node_keys.generate(tmp_path, 0, 4, if_absent=True)) == 2
    assert private.read_bytes() == before
    with pytest.raises(tls.CertError, match="already exists"):
        node_keys.generate(tmp_path, 0, 1)
