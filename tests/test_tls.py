"""Node identities (rusm.net.tls): real certificates, real files, real verification."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rusm.actors.errors import RusmError
from rusm.net.tls import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    SHARED_SAN,
    TRUST_FILE,
    ClusterCa,
    Identity,
    IdentityExists,
    IdentityNotFound,
    InvalidIdentity,
    InvalidNodeName,
    KeyPermissionError,
    PeerRejected,
    TlsError,
    verify_peer,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
UTC = dt.UTC


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


@pytest.fixture(scope="module")
def london(ca: ClusterCa) -> Identity:
    return ca.issue("london")


@pytest.fixture(scope="module")
def paris(ca: ClusterCa) -> Identity:
    return ca.issue("paris")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Files are created 0600 by mode, not thanks to a strict umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def chain(identity: Identity) -> list[x509.Certificate]:
    return list(identity.chain)


def assert_rejected(
    identity: Identity,
    peer_chain: list[x509.Certificate],
    claimed: str | None,
    *words: str,
    now: dt.datetime | None = None,
) -> None:
    """verify_peer refuses the chain, and its reason contains every one of ``words``."""
    with pytest.raises(PeerRejected) as info:
        verify_peer(identity, peer_chain, claimed, now)
    for word in words:
        assert word in info.value.reason, info.value.reason


def san_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def self_signed_rogue(name: str, issuer: x509.Name) -> x509.Certificate:
    """A certificate for node ``name`` that claims ``issuer`` but signs itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )


# -- making identities --


def test_cluster_ca_issues_a_certificate_naming_the_node_in_cn_and_san(
    ca: ClusterCa, london: Identity
) -> None:
    assert london.name == "london"
    assert common_name(london.certificate) == "london"
    assert san_names(london.certificate) == ["london"]
    assert london.certificate.issuer == ca.certificate.subject
    assert london.trust == (ca.certificate,)
    london.certificate.verify_directly_issued_by(ca.certificate)


def test_issued_certificate_serves_both_ends_of_a_link(london: Identity) -> None:
    exts = london.certificate.extensions
    assert exts.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = exts.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_ca_certificate_is_a_ca_that_can_only_sign_node_certificates(ca: ClusterCa) -> None:
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert constraints.path_length == 0


def test_keys_are_ecdsa_p256(ca: ClusterCa, london: Identity) -> None:
    shared = Identity.generate()
    for key in (ca.key, london.key, shared.key):
        assert isinstance(key.curve, ec.SECP256R1)


def test_shared_identity_is_one_self_signed_certificate_that_trusts_itself() -> None:
    shared = Identity.generate()
    assert shared.name is None
    assert shared.chain == shared.trust
    assert shared.certificate.issuer == shared.certificate.subject
    assert san_names(shared.certificate) == [SHARED_SAN]
    shared.certificate.verify_directly_issued_by(shared.certificate)


def test_two_cluster_cas_have_different_names() -> None:
    first, second = ClusterCa.generate(), ClusterCa.generate()
    assert first.certificate.subject != second.certificate.subject


@pytest.mark.parametrize("name", ["london", "node_1", "eu-west-2", "N7", "x" * 63])
def test_node_names_of_letters_digits_dash_and_underscore_are_issued(
    ca: ClusterCa, name: str
) -> None:
    identity = ca.issue(name)
    assert san_names(identity.certificate) == [name]
    verify_peer(identity, chain(identity), name)


@pytest.mark.parametrize(
    "name", ["", "x" * 64, "lon don", "london.eu", "lôndon", "london\n", "a/b", "*"]
)
def test_invalid_node_names_are_refused_with_a_value_error(ca: ClusterCa, name: str) -> None:
    with pytest.raises(ValueError, match="invalid node name") as info:
        ca.issue(name)
    assert isinstance(info.value, InvalidNodeName)


def test_issue_takes_explicit_validity_bounds(ca: ClusterCa) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=UTC)
    end = dt.datetime(2030, 2, 1, tzinfo=UTC)
    cert = ca.issue("london", not_before=start, not_after=end).certificate
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)


def test_issue_takes_a_number_of_days(ca: ClusterCa) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=UTC)
    cert = ca.issue("london", not_before=start, days=10).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=10)


def test_issue_refuses_days_and_not_after_together(ca: ClusterCa) -> None:
    with pytest.raises(ValueError, match="not both"):
        ca.issue("london", days=1, not_after=dt.datetime(2030, 1, 1, tzinfo=UTC))


def test_issue_refuses_a_validity_that_ends_before_it_starts(ca: ClusterCa) -> None:
    with pytest.raises(ValueError, match="later than"):
        ca.issue(
            "london",
            not_before=dt.datetime(2030, 1, 2, tzinfo=UTC),
            not_after=dt.datetime(2030, 1, 1, tzinfo=UTC),
        )


def test_identity_gives_the_quic_layer_pem_bytes(ca: ClusterCa, london: Identity) -> None:
    assert x509.load_pem_x509_certificates(london.chain_pem) == [london.certificate]
    key = serialization.load_pem_private_key(london.key_pem, password=None)
    assert key.public_key() == london.certificate.public_key()
    assert london.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # what aioquic splits on
    assert x509.load_pem_x509_certificates(london.cadata) == [ca.certificate]


def test_identity_refuses_a_key_that_does_not_match_its_certificate(
    london: Identity, paris: Identity
) -> None:
    with pytest.raises(InvalidIdentity, match="does not belong"):
        Identity(chain=london.chain, key=paris.key, trust=london.trust, name="london")


# -- files --


def test_issued_identity_round_trips_through_a_directory(tmp_path: Path, london: Identity) -> None:
    written = london.save(tmp_path)
    assert written == [tmp_path / CERT_FILE, tmp_path / KEY_FILE, tmp_path / TRUST_FILE]
    loaded = Identity.load(tmp_path)
    assert loaded.name == "london"
    assert loaded.chain == london.chain
    assert loaded.trust == london.trust
    assert loaded.key_pem == london.key_pem


def test_shared_identity_round_trips_through_a_directory(tmp_path: Path) -> None:
    shared = Identity.generate()
    shared.save(tmp_path)
    loaded = Identity.load(tmp_path)
    assert loaded.name is None
    assert loaded.chain == shared.chain == loaded.trust
    verify_peer(loaded, chain(shared), None)


def test_cluster_ca_round_trips_and_still_issues_trusted_certificates(
    tmp_path: Path, ca: ClusterCa, london: Identity
) -> None:
    assert ca.save(tmp_path) == [tmp_path / CA_CERT_FILE, tmp_path / CA_KEY_FILE]
    loaded = ClusterCa.load(tmp_path)
    assert loaded.certificate == ca.certificate
    verify_peer(london, chain(loaded.issue("rome")), "rome")


@posix_only
def test_key_files_are_created_mode_0600_whatever_the_umask(
    tmp_path: Path, ca: ClusterCa, london: Identity, permissive_umask: None
) -> None:
    london.save(tmp_path / "node")
    ca.save(tmp_path / "ca")
    assert mode_of(tmp_path / "node" / KEY_FILE) == 0o600
    assert mode_of(tmp_path / "ca" / CA_KEY_FILE) == 0o600
    assert mode_of(tmp_path / "node" / CERT_FILE) == 0o644


@posix_only
def test_overwriting_a_wide_open_key_leaves_it_0600(tmp_path: Path, london: Identity) -> None:
    key_path = tmp_path / KEY_FILE
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)
    london.save(tmp_path, overwrite=True)
    assert mode_of(key_path) == 0o600
    assert Identity.load(tmp_path).name == "london"


def test_saving_over_an_existing_identity_is_refused_without_overwrite(
    tmp_path: Path, london: Identity, paris: Identity
) -> None:
    london.save(tmp_path)
    with pytest.raises(IdentityExists, match=CERT_FILE):
        paris.save(tmp_path)
    assert Identity.load(tmp_path).name == "london"


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=oct)
def test_key_readable_by_group_or_others_is_refused_with_the_fix(
    tmp_path: Path, london: Identity, mode: int
) -> None:
    london.save(tmp_path)
    (tmp_path / KEY_FILE).chmod(mode)
    with pytest.raises(KeyPermissionError) as info:
        Identity.load(tmp_path)
    assert f"run: chmod 600 {tmp_path / KEY_FILE}" in str(info.value)
    assert isinstance(info.value, PermissionError)


@posix_only
def test_ca_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path, ca: ClusterCa) -> None:
    ca.save(tmp_path)
    (tmp_path / CA_KEY_FILE).chmod(0o644)
    with pytest.raises(KeyPermissionError, match=f"chmod 600 {tmp_path / CA_KEY_FILE}"):
        ClusterCa.load(tmp_path)


@pytest.mark.parametrize("missing", [CERT_FILE, KEY_FILE, TRUST_FILE])
def test_missing_identity_file_is_named(tmp_path: Path, london: Identity, missing: str) -> None:
    london.save(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(IdentityNotFound, match=missing) as info:
        Identity.load(tmp_path)
    assert info.value.path == tmp_path / missing
    assert isinstance(info.value, FileNotFoundError)


def test_missing_ca_directory_names_the_ca_certificate(tmp_path: Path) -> None:
    with pytest.raises(IdentityNotFound, match=CA_CERT_FILE):
        ClusterCa.load(tmp_path / "nowhere")


def test_key_of_another_node_is_refused_on_load(
    tmp_path: Path, london: Identity, paris: Identity
) -> None:
    london.save(tmp_path / "london")
    paris.save(tmp_path / "paris")
    os.replace(tmp_path / "paris" / KEY_FILE, tmp_path / "london" / KEY_FILE)
    with pytest.raises(InvalidIdentity, match="does not belong"):
        Identity.load(tmp_path / "london")


def test_a_file_that_is_not_pem_is_refused_naming_it(tmp_path: Path, london: Identity) -> None:
    london.save(tmp_path)
    (tmp_path / TRUST_FILE).write_text("not a certificate\n")
    with pytest.raises(InvalidIdentity, match=TRUST_FILE):
        Identity.load(tmp_path)


# -- verifying peers --


def test_peer_with_cert_issued_for_its_claimed_name_is_accepted(
    london: Identity, paris: Identity
) -> None:
    verify_peer(london, chain(paris), "paris")
    verify_peer(paris, chain(london), "london")


def test_peer_with_no_certificate_is_rejected(london: Identity) -> None:
    assert_rejected(london, [], "paris", "no certificate")


def test_peer_with_cert_from_other_ca_is_rejected(london: Identity) -> None:
    # Same CA name, other key: a look-alike cluster.
    other = ClusterCa.generate(common_name=common_name(london.trust[0])).issue("paris")
    assert_rejected(london, chain(other), "paris", "not signed by this cluster's trust anchor")


def test_peer_with_self_signed_rogue_cert_is_rejected(london: Identity) -> None:
    rogue = self_signed_rogue("paris", issuer=london.trust[0].subject)
    assert_rejected(london, [rogue], "paris", "not signed by this cluster's trust anchor")


def test_peer_sending_our_ca_after_a_rogue_leaf_is_rejected(london: Identity) -> None:
    rogue = self_signed_rogue("paris", issuer=london.trust[0].subject)
    assert_rejected(london, [rogue, london.trust[0]], "paris", "not signed")


def test_peer_presenting_the_ca_certificate_itself_is_rejected(london: Identity) -> None:
    assert_rejected(london, [london.trust[0]], "paris", "instead of a node certificate")


def test_peer_with_expired_cert_is_rejected(ca: ClusterCa, london: Identity) -> None:
    now = dt.datetime.now(UTC)
    expired = ca.issue("paris", not_before=now - dt.timedelta(days=30), days=1)
    assert_rejected(london, chain(expired), "paris", "expired on", "rusm cert issue")


def test_peer_with_not_yet_valid_cert_is_rejected(ca: ClusterCa, london: Identity) -> None:
    future = ca.issue("paris", not_before=dt.datetime.now(UTC) + dt.timedelta(days=1))
    assert_rejected(london, chain(future), "paris", "not valid until", "clocks")


def test_peer_claiming_another_nodes_name_is_rejected(london: Identity, paris: Identity) -> None:
    assert_rejected(
        london, chain(paris), "rome", "claims to be node 'rome'", "certificate is for 'paris'"
    )


def test_peer_names_are_compared_exactly(ca: ClusterCa, london: Identity) -> None:
    assert_rejected(london, chain(ca.issue("Paris")), "paris", "claims to be node 'paris'")


def test_peer_claiming_no_name_under_a_cluster_ca_is_rejected(
    london: Identity, paris: Identity
) -> None:
    assert_rejected(london, chain(paris), None, "did not say which node it is")


def test_verification_happens_at_the_time_given(london: Identity, paris: Identity) -> None:
    later = paris.certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    assert_rejected(london, chain(paris), "paris", "expired", now=later)
    naive_earlier = (paris.certificate.not_valid_before_utc + dt.timedelta(1)).replace(tzinfo=None)
    verify_peer(london, chain(paris), "paris", naive_earlier)


def test_expired_trust_anchor_is_reported_as_this_nodes_problem() -> None:
    old_ca = ClusterCa.generate(days=1)
    node = old_ca.issue("london")
    peer = old_ca.issue("paris", days=30)
    later = old_ca.certificate.not_valid_after_utc + dt.timedelta(hours=1)
    assert_rejected(node, chain(peer), "paris", "this node's trust anchor", now=later)


def test_shared_identity_accepts_its_own_certificate_whatever_name_is_claimed() -> None:
    shared = Identity.generate()
    verify_peer(shared, chain(shared), None)
    verify_peer(shared, chain(shared), "anything")


def test_shared_identity_rejects_another_shared_identity() -> None:
    shared, other = Identity.generate(), Identity.generate()
    assert_rejected(shared, chain(other), None, "not signed by this cluster's trust anchor")


def test_shared_identity_rejects_a_ca_issued_certificate(london: Identity) -> None:
    assert_rejected(Identity.generate(), chain(london), None, "not signed")


def test_shared_identity_rejects_no_certificate() -> None:
    assert_rejected(Identity.generate(), [], None, "no certificate")


def test_cluster_ca_identity_rejects_a_shared_identity(london: Identity) -> None:
    assert_rejected(london, chain(Identity.generate()), "paris", "not signed")


def test_errors_form_one_tree_under_rusm_error() -> None:
    for error in (PeerRejected, InvalidNodeName, IdentityNotFound, IdentityExists,
                  KeyPermissionError, InvalidIdentity):
        assert issubclass(error, TlsError)
    assert issubclass(TlsError, RusmError)
    assert PeerRejected("no certificate").reason == "no certificate"


def test_expired_shared_identity_says_to_make_a_new_one() -> None:
    shared = Identity.generate(days=1)
    later = shared.certificate.not_valid_after_utc + dt.timedelta(hours=1)
    assert_rejected(shared, chain(shared), None, "expired on", "rusm cert identity", now=later)
