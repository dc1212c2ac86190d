"""The certs tool with real cryptography: files and modes, chain, SANs, refusals, expiry, node keys, TLS."""

import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from pki import node_keys, tls
from tests.support.results import REPO

NAMES = ("ca.crt", "ca.key", "server.pem", "server.key")


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "pki", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "FJS_PUBLIC_HOSTS": "", "CERTS_EXTRA_SANS": "", **env})


def _one_line_error(done, code=2):
    assert done.returncode == code, done
    assert done.stderr.startswith("pki: error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in NAMES}


@pytest.fixture
def made(tmp_path, monkeypatch):
    monkeypatch.delenv("FJS_PUBLIC_HOSTS", raising=False)
    monkeypatch.delenv("CERTS_EXTRA_SANS", raising=False)
    tls.generate(tmp_path, ["example.org", "10.1.2.3"])
    return tmp_path


def test_init_writes_keys_0600_and_certificates_0644(made):
    modes = {p.name: p.stat().st_mode & 0o777 for p in made.iterdir()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "server.pem": 0o644, "server.key": 0o600}


def test_server_certificate_is_signed_by_the_ca_and_shaped_for_tls(made):
    ca, server = tls.load_cert(made / "ca.crt"), tls.load_cert(made / "server.pem")
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    assert isinstance(server.public_key().curve, ec.SECP384R1) and server.signature_hash_algorithm.name == "sha384"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    assert ca.not_valid_after_utc > server.not_valid_after_utc
    assert tls.verify(made) == []


def test_sans_hold_the_defaults_and_extras_with_ips_as_ip_entries(made):
    server = tls.load_cert(made / "server.pem")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert set(sans.get_values_for_type(x509.DNSName)) == {"superlink", "localhost", "example.org"}
    assert tls.verify(made, ["superlink", "localhost", "127.0.0.1", "example.org", "10.1.2.3"]) == []


@pytest.mark.parametrize("variable", ["FJS_PUBLIC_HOSTS", "CERTS_EXTRA_SANS"])  # the old name, for one release
def test_cli_takes_comma_lists_ipv6_and_the_environment(tmp_path, variable):
    done = _cli("init", "--out", str(tmp_path), "--san", "a.example,10.0.0.5", "--san", "::1",
                **{variable: "b.example, 192.168.7.7"})
    assert done.returncode == 0, done.stderr
    sans = tls.san_names(tls.load_cert(tmp_path / "server.pem"))
    assert sans == ["superlink", "localhost", "127.0.0.1", "a.example", "10.0.0.5", "::1", "b.example", "192.168.7.7"]
    assert ("deprecated" in done.stderr) == (variable == "CERTS_EXTRA_SANS")


def test_a_certificate_from_another_ca_is_rejected(made, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    tls.generate(other, [])
    shutil.copy(other / "ca.crt", made / "ca.crt")
    assert any("server.pem is not signed by ca.crt" in p for p in tls.verify(made))
    done = _cli("verify", "--dir", str(made))  # one line per problem: foreign CA, and ca.key no longer matches
    assert done.returncode == 1 and all(line.startswith("pki: error: ") for line in done.stderr.splitlines())
    assert "server.pem is not signed by ca.crt" in done.stderr and "ca.key does not belong to ca.crt" in done.stderr


def test_cli_refuses_to_overwrite_keeps_with_if_absent_replaces_with_force(made):
    before = _snapshot(made)
    refused = _cli("init", "--out", str(made))
    _one_line_error(refused)
    assert "already exists" in refused.stderr and "--force" in refused.stderr and "--if-absent" in refused.stderr
    kept = _cli("init", "--out", str(made), "--if-absent")
    assert kept.returncode == 0 and f"kept existing certificates in {made}" in kept.stdout
    assert _snapshot(made) == before
    forced = _cli("init", "--out", str(made), "--force")
    assert forced.returncode == 0, forced.stderr
    after = _snapshot(made)
    assert all(after[name] != before[name] for name in NAMES) and tls.verify(made) == []


def test_if_absent_with_only_some_files_names_the_missing_ones(made):
    (made / "server.key").unlink()
    done = _cli("init", "--out", str(made), "--if-absent")
    _one_line_error(done)
    assert "missing server.key" in done.stderr and "--force" in done.stderr


def test_usage_errors_are_one_line(tmp_path):
    for args in (["init", "--bogus"], ["init", "--days", "0"], ["node-keys"], ["init", "--chown", "x", "--out", str(tmp_path)]):
        _one_line_error(_cli(*args))
    assert not any(tmp_path.iterdir())  # a bad --chown is caught before anything is written


def test_chown_hands_what_the_services_read_to_their_user_and_keeps_the_ca_key(tmp_path):
    # As root (CI, the compose init container) hand files to another uid; otherwise only to ourselves.
    uid, gid = (10001, 10001) if os.getuid() == 0 else (os.getuid(), os.getgid())
    assert _cli("init", "--out", str(tmp_path), "--chown", f"{uid}:{gid}").returncode == 0
    assert _cli("node-keys", "--dir", str(tmp_path), "--count", "1", "--chown", f"{uid}:{gid}").returncode == 0
    service_files = [p for p in tmp_path.rglob("*.*") if p.name != "ca.key"]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in service_files} == {(uid, gid)}
    assert (tmp_path / "ca.key").stat().st_uid == os.getuid(), "the CA key stays with the operator"


def test_uncovered_host_fails_naming_host_and_fix(made):
    [problem] = tls.verify(made, ["nope.example"])
    assert '"nope.example"' in problem and "--san nope.example" in problem
    done = _cli("verify", "--dir", str(made), "--host", "elsewhere.org")
    _one_line_error(done, code=1)
    assert 'does not cover host "elsewhere.org"' in done.stderr
    ok = _cli("verify", "--dir", str(made), "--host", "localhost", "--host", "10.1.2.3")
    assert ok.returncode == 0 and ok.stdout.startswith("pki: OK")


def test_expired_server_certificate_is_reported(tmp_path):
    tls.generate(tmp_path, [], days=1, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30))
    assert any(p.startswith("server.pem expired on") and "--force" in p for p in tls.verify(tmp_path))
    shown = _cli("show", "--dir", str(tmp_path))
    assert shown.returncode == 0 and "(EXPIRED)" in shown.stdout


def test_a_key_that_does_not_match_is_reported(made, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    tls.generate(other, [])
    shutil.copy(other / "server.key", made / "server.key")
    assert any("server.key does not belong to server.pem" in p for p in tls.verify(made))


def test_show_prints_names_dates_and_fingerprints(made):
    node_keys.generate(made, 0, 1)
    shown = _cli("show", "--dir", str(made))
    assert shown.returncode == 0, shown.stderr
    server = tls.load_cert(made / "server.pem")
    assert "subject CN  superlink" in shown.stdout and "issuer CN   flower-jax-stack CA" in shown.stdout
    assert tls.fingerprint(server) in shown.stdout and server.not_valid_after_utc.isoformat() in shown.stdout
    assert "node-keys/node-0.pub  SHA256:" in shown.stdout


def test_node_keys_are_p384_openssh_pairs_and_slots_can_be_added(tmp_path):
    node_keys.generate(tmp_path, 0, 2)
    private, public = node_keys.key_paths(tmp_path, 1)
    key = load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    assert load_ssh_public_key(public.read_bytes()).public_numbers() == key.public_key().public_numbers()
    assert public.read_text().rstrip("\n").endswith(" flower-jax-stack node-1")
    assert (private.stat().st_mode & 0o777, public.stat().st_mode & 0o777) == (0o600, 0o644)
    before = {p.name: p.read_bytes() for p in (tmp_path / "node-keys").iterdir()}
    done = _cli("node-keys", "--dir", str(tmp_path), "--count", "4", "--if-absent")
    assert done.returncode == 0 and "created slots 2, 3; kept 0, 1" in done.stdout
    assert {p.name: p.read_bytes() for p in (tmp_path / "node-keys").iterdir() if p.name in before} == before
    assert len(list((tmp_path / "node-keys").iterdir())) == 8
    _one_line_error(_cli("node-keys", "--dir", str(tmp_path), "--count", "1"))
    [replaced] = node_keys.generate(tmp_path, 0, 1, force=True)
    assert replaced.read_bytes() != before["node-0.key"] and private.read_bytes() == before["node-1.key"]


def test_real_tls_handshake_accepts_our_ca_and_rejects_another(made, tmp_path_factory):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(made / "server.pem", made / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
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
    good = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    good.load_verify_locations(made / "ca.crt")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with good.wrap_socket(raw, server_hostname="localhost") as tls_sock:
            assert tls_sock.getpeercert()["subject"] == ((("commonName", "superlink"),),)
    other = tmp_path_factory.mktemp("stranger")
    tls.generate(other, [])
    wrong = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    wrong.load_verify_locations(other / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            wrong.wrap_socket(raw, server_hostname="localhost")
    thread.join(10)
    listener.close()


def test_loopback_pair_is_a_fresh_localhost_only_certificate(tmp_path):
    first = tls.loopback_pair(tmp_path)
    server = tls.load_cert(first["server_cert"])
    assert sorted(tls.san_names(server)) == ["127.0.0.1", "localhost"]
    assert tls.verify(tmp_path, ["127.0.0.1"]) == []
    before = first["server_key"].read_bytes()
    tls.loopback_pair(tmp_path)  # every container start makes a new one
    assert first["server_key"].read_bytes() != before
