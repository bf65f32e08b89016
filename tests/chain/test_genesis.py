"""Genesis files (TOML and JSON) and the errors an operator sees for bad ones."""

from __future__ import annotations

import pytest

from appliance.runtime.errors import ConfigError
from chain_client.crypto import SoftwareSigner
from chain_node.genesis import Genesis, GenesisAccount, load_genesis
from chain_node.server import Node, NodeConfig


def test_toml_and_json_genesis(tmp_path):
    address = SoftwareSigner().address()
    toml = tmp_path / "genesis.toml"
    toml.write_text(
        f'chain_id = "dev-1"\n[params]\ndefault_btl = 7\nmin_gas_price = 0\n'
        f'[[accounts]]\naddress = "{address}"\nbalance = 5\n'
    )
    genesis = load_genesis(toml)
    assert genesis.chain_id == "dev-1" and genesis.params.default_btl == 7
    assert genesis.params.min_gas_price == 0.0
    assert genesis.accounts == [GenesisAccount(address, 5)]
    as_json = tmp_path / "genesis.json"
    as_json.write_text(genesis.to_json())
    assert load_genesis(as_json) == genesis


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('chain_id = ""\n', "genesis.chain_id: must not be empty"),
        ('chain_id = "x"\n[[accounts]]\naddress = "cosmos1qq"\nbalance = 1\n', "genesis.accounts[0].address"),
        ('chain_id = "x"\n[params]\ndefault_btl = "20"\n', "genesis.params.default_btl: expected an integer"),
        ('chain_id = "x"\ncolour = 1\n', "genesis.colour: unknown field"),
        ("chain_id = \n", "not valid TOML"),
    ],
)
def test_bad_genesis_names_the_field(tmp_path, text, fragment):
    path = tmp_path / "genesis.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_genesis(path)
    assert fragment in str(caught.value)


def test_data_dir_of_another_chain_is_refused(tmp_path):
    config = NodeConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0")
    Node(Genesis(chain_id="one"), config).stop()
    with pytest.raises(ValueError, match="data dir holds chain 'one'"):
        Node(Genesis(chain_id="two"), config)
