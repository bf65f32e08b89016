"""The committed protobuf stubs must be exactly what `make proto` generates from proto/."""

from __future__ import annotations

from pathlib import Path

from chain_client import protogen


def test_committed_stubs_are_not_stale(tmp_path):
    fresh_root = tmp_path / "proto_gen"
    protogen.generate(fresh_root)
    committed_root = protogen.DEFAULT_OUT
    fresh = {p.relative_to(fresh_root): p.read_bytes() for p in fresh_root.rglob("*.py")}
    committed = {p.relative_to(committed_root): p.read_bytes() for p in committed_root.rglob("*.py")}
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "run `make proto` and commit the stubs"
    stale = [str(path) for path in fresh if fresh[path] != committed[path]]
    assert not stale, f"stale stubs (run `make proto`): {stale}"


def test_field_numbers_match_the_wire_facts():
    from chain_client.proto_gen.zrchain.treasury import key_pb2, mpcsign_pb2, tx_pb2

    def numbers(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(key_pb2.KeyRequest)["keyring_party_sigs"] == 15
    assert numbers(key_pb2.KeyRequest)["public_key"] == 14
    assert numbers(mpcsign_pb2.SignRequest)["keyring_party_sigs"] == 18
    assert numbers(mpcsign_pb2.SignReqResponse)["keyring_party_sigs"] == 8
    assert numbers(mpcsign_pb2.SignReqResponse)["mpc_btl"] == 14
    assert numbers(tx_pb2.MsgFulfilKeyRequest)["keyring_party_signature"] == 6
    assert numbers(tx_pb2.MsgFulfilSignatureRequest)["signed_data"] == 5
    assert tx_pb2.MsgFulfilKeyRequest.DESCRIPTOR.full_name == "zrchain.treasury.MsgFulfilKeyRequest"
    assert Path(protogen.PROTO_DIR / "zrchain" / "treasury" / "tx.proto").exists()
