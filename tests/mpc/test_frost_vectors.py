"""RFC 9591 appendix E test vectors for FROST(Ed25519, SHA-512) and FROST(secp256k1, SHA-256).

Every intermediate figure is checked: nonces from the given randomness, commitments, binding factor
inputs and factors, signature shares, the signature; then the same run through the state machine."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.mpc_party.protocols.dkg import KeyShare
from appliance.mpc_party.protocols.frost import FROST_ED25519, FROST_SECP256K1, FrostSigner, core, decode_frost_message
from appliance.mpc_party.protocols.frost.ciphersuite import expand_message_xmd_sha256

# Transcribed from RFC 9591 appendix E, FROST(Ed25519, SHA-512): 2-of-3, signers 1 and 3.
ED25519_VECTOR = {
    'group_secret_key': '7b1c33d3f5291d85de664833beb1ad469f7fb6025a0ec78b3a790c6e13a98304',
    'group_public_key': '15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673',
    'message': '74657374',
    'participant_list': [1, 3],
    'shares': {
        1: '929dcc590407aae7d388761cddb0c0db6f5627aea8e217f4a033f2ec83d93509',
        2: 'a91e66e012e4364ac9aaa405fcafd370402d9859f7b6685c07eed76bf409e80d',
        3: 'd3cb090a075eb154e82fdb4b3cb507f110040905468bb9c46da8bdea643a9a02',
    },
    'round_one': {
        1: {
            'hiding_nonce_randomness': '0fd2e39e111cdc266f6c0f4d0fd45c947761f1f5d3cb583dfcb9bbaf8d4c9fec',
            'binding_nonce_randomness': '69cd85f631d5f7f2721ed5e40519b1366f340a87c2f6856363dbdcda348a7501',
            'hiding_nonce': '812d6104142944d5a55924de6d49940956206909f2acaeedecda2b726e630407',
            'binding_nonce': 'b1110165fc2334149750b28dd813a39244f315cff14d4e89e6142f262ed83301',
            'hiding_nonce_commitment': 'b5aa8ab305882a6fc69cbee9327e5a45e54c08af61ae77cb8207be3d2ce13de3',
            'binding_nonce_commitment': '67e98ab55aa310c3120418e5050c9cf76cf387cb20ac9e4b6fdb6f82a469f932',
            'binding_factor_input': (
                '15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673'
                '504df914fa965023fb75c25ded4bb260f417de6d32e5c442c6ba313791cc9a49'
                '48d6273e8d3511f93348ea7a708a9b862bc73ba2a79cfdfe07729a193751cbc9'
                '73af46d8ac3440e518d4ce440a0e7d4ad5f62ca8940f32de6d8dc00fc12c660b'
                '817d587d82f856d277ce6473cae6d2f5763f7da2e8b4d799a3f3e725d4522ec7'
                '0100000000000000000000000000000000000000000000000000000000000000'
            ),
            'binding_factor': 'f2cb9d7dd9beff688da6fcc83fa89046b3479417f47f55600b106760eb3b5603',
        },
        3: {
            'hiding_nonce_randomness': '86d64a260059e495d0fb4fcc17ea3da7452391baa494d4b00321098ed2a0062f',
            'binding_nonce_randomness': '13e6b25afb2eba51716a9a7d44130c0dbae0004a9ef8d7b5550c8a0e07c61775',
            'hiding_nonce': 'c256de65476204095ebdc01bd11dc10e57b36bc96284595b8215222374f99c0e',
            'binding_nonce': '243d71944d929063bc51205714ae3c2218bd3451d0214dfb5aeec2a90c35180d',
            'hiding_nonce_commitment': 'cfbdb165bd8aad6eb79deb8d287bcc0ab6658ae57fdcc98ed12c0669e90aec91',
            'binding_nonce_commitment': '7487bc41a6e712eea2f2af24681b58b1cf1da278ea11fe4e8b78398965f13552',
            'binding_factor_input': (
                '15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673'
                '504df914fa965023fb75c25ded4bb260f417de6d32e5c442c6ba313791cc9a49'
                '48d6273e8d3511f93348ea7a708a9b862bc73ba2a79cfdfe07729a193751cbc9'
                '73af46d8ac3440e518d4ce440a0e7d4ad5f62ca8940f32de6d8dc00fc12c660b'
                '817d587d82f856d277ce6473cae6d2f5763f7da2e8b4d799a3f3e725d4522ec7'
                '0300000000000000000000000000000000000000000000000000000000000000'
            ),
            'binding_factor': 'b087686bf35a13f3dc78e780a34b0fe8a77fef1b9938c563f5573d71d8d7890f',
        },
    },
    'sig_shares': {
        1: '001719ab5a53ee1a12095cd088fd149702c0720ce5fd2f29dbecf24b7281b603',
        3: 'bd86125de990acc5e1f13781d8e32c03a9bbd4c53539bbc106058bfd14326007',
    },
    'sig': (
        '36282629c383bb820a88b71cae937d41f2f2adfcc3d02e55507e2fb9e2dd3cbe'
        'bd9d2b0844e49ae0f3fa935161e1419aab7b47d21a37ebeae1f17d4987b3160b'
    ),
}


# Transcribed from RFC 9591 appendix E, FROST(secp256k1, SHA-256): 2-of-3, signers 1 and 3.
SECP256K1_VECTOR = {
    'group_secret_key': '0d004150d27c3bf2a42f312683d35fac7394b1e9e318249c1bfe7f0795a83114',
    'group_public_key': (
        '02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b'
        '4f'
    ),
    'message': '74657374',
    'participant_list': [1, 3],
    'shares': {
        1: '08f89ffe80ac94dcb920c26f3f46140bfc7f95b493f8310f5fc1ea2b01f4254c',
        2: '04f0feac2edcedc6ce1253b7fab8c86b856a797f44d83d82a385554e6e401984',
        3: '00e95d59dd0d46b0e303e500b62b7ccb0e555d49f5b849f5e748c071da8c0dbc',
    },
    'round_one': {
        1: {
            'hiding_nonce_randomness': '7ea5ed09af19f6ff21040c07ec2d2adbd35b759da5a401d4c99dd26b82391cb2',
            'binding_nonce_randomness': '47acab018f116020c10cb9b9abdc7ac10aae1b48ca6e36dc15acb6ec9be5cdc5',
            'hiding_nonce': '841d3a6450d7580b4da83c8e618414d0f024391f2aeb511d7579224420aa81f0',
            'binding_nonce': '8d2624f532af631377f33cf44b5ac5f849067cae2eacb88680a31e77c79b5a80',
            'hiding_nonce_commitment': (
                '03c699af97d26bb4d3f05232ec5e1938c12f1e6ae97643c8f8f11c9820303f19'
                '04'
            ),
            'binding_nonce_commitment': (
                '02fa2aaccd51b948c9dc1a325d77226e98a5a3fe65fe9ba213761a60123040a4'
                '5e'
            ),
            'binding_factor_input': (
                '02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b'
                '4fff9b5210ffbb3c07a73a7c8935be4a8c62cf015f6cf7ade6efac09a6513540'
                'fc3f5a816aaebc2114a811a415d7a55db7c5cbc1cf27183e79dd9def941b5d48'
                '0100000000000000000000000000000000000000000000000000000000000000'
                '01'
            ),
            'binding_factor': '3e08fe561e075c653cbfd46908a10e7637c70c74f0a77d5fd45d1a750c739ec6',
        },
        3: {
            'hiding_nonce_randomness': 'e6cc56ccbd0502b3f6f831d91e2ebd01c4de0479e0191b66895a4ffd9b68d544',
            'binding_nonce_randomness': '7203d55eb82a5ca0d7d83674541ab55f6e76f1b85391d2c13706a89a064fd5b9',
            'hiding_nonce': '2b19b13f193f4ce83a399362a90cdc1e0ddcd83e57089a7af0bdca71d47869b2',
            'binding_nonce': '7a443bde83dc63ef52dda354005225ba0e553243402a4705ce28ffaafe0f5b98',
            'hiding_nonce_commitment': (
                '03077507ba327fc074d2793955ef3410ee3f03b82b4cdc2370f71d865beb926e'
                'f6'
            ),
            'binding_nonce_commitment': (
                '02ad53031ddfbbacfc5fbda3d3b0c2445c8e3e99cbc4ca2db2aa283fa68525b1'
                '35'
            ),
            'binding_factor_input': (
                '02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b'
                '4fff9b5210ffbb3c07a73a7c8935be4a8c62cf015f6cf7ade6efac09a6513540'
                'fc3f5a816aaebc2114a811a415d7a55db7c5cbc1cf27183e79dd9def941b5d48'
                '0100000000000000000000000000000000000000000000000000000000000000'
                '03'
            ),
            'binding_factor': '93f79041bb3fd266105be251adaeb5fd7f8b104fb554a4ba9a0becea48ddbfd7',
        },
    },
    'sig_shares': {
        1: 'c4fce1775a1e141fb579944166eab0d65eefe7b98d480a569bbbfcb14f91c197',
        3: '0160fd0d388932f4826d2ebcd6b9eaba734f7c71cf25b4279a4ca2581e47b18d',
    },
    'sig': (
        '0205b6d04d3774c8929413e3c76024d54149c372d57aae62574ed74319b5ea14'
        'd0c65dde8492a7471437e6c2fe3da49b90d23f642b5c6dbe7e36089f096dd973'
        '24'
    ),
}

CASES = [(FROST_ED25519, ED25519_VECTOR), (FROST_SECP256K1, SECP256K1_VECTOR)]
IDS = ["ed25519", "secp256k1"]


def h(text):
    return bytes.fromhex(text)


def scalar(suite, text):
    return suite.group.decode_scalar(h(text))


def key_shares(suite, v):
    g = suite.group
    secrets_ = {i: scalar(suite, s) for i, s in v["shares"].items()}
    vshares = {i: g.base_mul(s) for i, s in secrets_.items()}
    pk = h(v["group_public_key"])
    return {i: KeyShare(g, i, 3, 2, s, pk, vshares, bytes(32)) for i, s in secrets_.items()}


def replay_rng(*chunks):
    queue = [h(c) for c in chunks]

    def rng(n):
        out = queue.pop(0)
        assert len(out) == n
        return out
    return rng


@pytest.mark.parametrize(("suite", "v"), CASES, ids=IDS)
def test_vector_step_by_step(suite, v):
    g = suite.group
    shares = key_shares(suite, v)
    assert g.base_mul(scalar(suite, v["group_secret_key"])) == h(v["group_public_key"])
    key = suite.signing_key(h(v["group_public_key"]))
    msg = h(v["message"])
    nonces, commitments = {}, []
    for i in v["participant_list"]:
        r1 = v["round_one"][i]
        n = core.commit(suite, i, shares[i].secret,
                        replay_rng(r1["hiding_nonce_randomness"], r1["binding_nonce_randomness"]))
        assert n.hiding == scalar(suite, r1["hiding_nonce"])
        assert n.binding == scalar(suite, r1["binding_nonce"])
        assert n.commitment.hiding == h(r1["hiding_nonce_commitment"])
        assert n.commitment.binding == h(r1["binding_nonce_commitment"])
        nonces[i] = n
        commitments.append(n.commitment)
    prefix = core.binding_factor_prefix(suite, key, commitments, msg)
    rho = core.compute_binding_factors(suite, key, commitments, msg)
    for i in v["participant_list"]:
        assert prefix + suite.serialize_id(i) == h(v["round_one"][i]["binding_factor_input"])
        assert rho[i] == scalar(suite, v["round_one"][i]["binding_factor"])
    pkg = core.signing_package(suite, key, commitments, msg)
    zs = {}
    for c in commitments:
        i = c.identifier
        zs[i] = core.sign_share(suite, i, shares[i].secret, nonces[i].take(), pkg)
        assert zs[i] == scalar(suite, v["sig_shares"][i])
        assert core.verify_share(suite, c, shares[i].verification_shares[i], zs[i], pkg)
    sig = core.aggregate(suite, zs, pkg)
    assert sig == h(v["sig"])
    assert suite.verify(key, msg, sig)


@pytest.mark.parametrize(("suite", "v"), CASES, ids=IDS)
def test_vector_through_state_machine(suite, v):
    shares = key_shares(suite, v)
    ids = v["participant_list"]
    signers = {}
    for i in ids:
        r1 = v["round_one"][i]
        rng = replay_rng(r1["hiding_nonce_randomness"], r1["binding_nonce_randomness"])
        signers[i] = FrostSigner(suite, shares[i], bytes(32), ids, h(v["message"]), rng)
    for msgs in ([s.commit() for s in signers.values()], None):
        if msgs is None:
            msgs = [s.sign() for s in signers.values()]
            assert {m.sender: m.share for m in msgs} == {i: scalar(suite, v["sig_shares"][i]) for i in ids}
        for m in msgs:
            for j, s in signers.items():
                if j != m.sender:
                    s.receive(decode_frost_message(suite.group, m.to_bytes(), m.sender))
    assert {s.aggregate() for s in signers.values()} == {h(v["sig"])}


def test_ed25519_vector_verifies_as_plain_ed25519():
    v = ED25519_VECTOR
    Ed25519PublicKey.from_public_bytes(h(v["group_public_key"])).verify(h(v["sig"]), h(v["message"]))


def test_expand_message_xmd_rfc9380_vector():
    # RFC 9380 appendix K.1, expand_message_xmd(SHA-256), DST "QUUX-V01-CS02-with-expander-SHA256-128"
    dst = b"QUUX-V01-CS02-with-expander-SHA256-128"
    assert expand_message_xmd_sha256(b"", dst, 0x20) == h(
        "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235")
    assert expand_message_xmd_sha256(b"abc", dst, 0x20) == h(
        "d8ccab23b5985ccea865c6c97b6e5b8350e794e603b4b97902f53a8a0d605615")
