"""The tree's architecture as tests: layers only import downward, and the protocols stay pure.

The layer order is read from docs/architecture.md (the "Layers" list), so the documentation and the
check cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("appliance", "chain_client", "chain_node")
# What a pure protocol module may never import (I/O, clocks, threads, HSM, storage).
FORBIDDEN_IN_PROTOCOLS = {"grpc", "pkcs11", "sqlite3", "socket", "threading", "time", "os", "subprocess",
                          "asyncio", "select", "selectors", "random"}


def layer_order() -> list[str]:
    """Packages from the bottom layer up, as docs/architecture.md lists them."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = re.findall(r"^\d+\.\s+`([\w.]+)`", section, flags=re.M)
    assert layers, "docs/architecture.md: no numbered `package` lines under ## Layers"
    return layers


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "proto_gen" in path.parts or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            mods[module_name(path)] = path
    return mods


def imports_of(path: Path, module: str) -> set[str]:
    """Every module named by an import statement (function-local imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str, layers: list[str]) -> str | None:
    """The most specific layer package that contains `module`."""
    best = None
    for layer in layers:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def test_layer_list_covers_every_package() -> None:
    layers = layer_order()
    assert len(set(layers)) == len(layers), "a layer is listed twice"
    unplaced = [m for m in source_modules() if m != "appliance" and layer_of(m, layers) is None]
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}"


def test_imports_only_run_downward() -> None:
    layers = layer_order()
    rank = {name: i for i, name in enumerate(layers)}
    violations = []
    for module, path in source_modules().items():
        own = layer_of(module, layers)
        if own is None:
            continue
        for target in imports_of(path, module):
            other = layer_of(target, layers)
            if other is None or other == own:
                continue
            if rank[other] > rank[own]:
                violations.append(f"{module} ({own}) imports {target} ({other}, a higher layer)")
    assert not violations, "\n".join(sorted(set(violations)))


def test_no_cycle_between_packages() -> None:
    """Also between packages of the same layer rank (none today): an import graph of layers is a DAG."""
    layers = layer_order()
    edges: dict[str, set[str]] = {layer: set() for layer in layers}
    for module, path in source_modules().items():
        own = layer_of(module, layers)
        for target in imports_of(path, module):
            other = layer_of(target, layers)
            if own and other and other != own:
                edges[own].add(other)
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in edges[node]:
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle between packages: " + " -> ".join([*stack, node, nxt]))
            if nxt not in seen:
                visit(nxt, [*stack, node])
        seen[node] = 2

    for layer in layers:
        if layer not in seen:
            visit(layer, [])


def test_controller_uses_only_the_party_contract() -> None:
    """The controller talks to its party through the local API module, never the daemon's internals
    (the pure protocols are a lower layer: it may use their group encodings to check results)."""
    bad = []
    for module, path in source_modules().items():
        if not module.startswith("appliance.controller"):
            continue
        for target in imports_of(path, module):
            allowed = ("appliance.mpc_party.local_api", "appliance.mpc_party.protocols")
            if target.startswith("appliance.mpc_party") and not target.startswith(allowed):
                bad.append(f"{module} imports {target}")
    assert not bad, bad


def test_protocols_import_nothing_that_does_io() -> None:
    bad = []
    for module, path in source_modules().items():
        if not module.startswith("appliance.mpc_party.protocols"):
            continue
        for target in imports_of(path, module):
            top = target.split(".")[0]
            if top in FORBIDDEN_IN_PROTOCOLS:
                bad.append(f"{module} imports {target}")
            if top in PACKAGES and not target.startswith("appliance.mpc_party.protocols"):
                bad.append(f"{module} imports {target} (outside the protocols package)")
    assert not bad, "\n".join(sorted(set(bad)))


_PURE_RUN = textwrap.dedent("""
    import sys

    class Refuse:
        BLOCKED = {"grpc", "pkcs11", "sqlite3", "_sqlite3", "socket", "_socket"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is not importable in this test")
            return None

    sys.meta_path.insert(0, Refuse())
    for name in list(sys.modules):
        if name.split(".")[0] in Refuse.BLOCKED:
            del sys.modules[name]

    import hashlib

    import coincurve
    from nacl.signing import VerifyKey

    from appliance.mpc_party.protocols import dispatch  # noqa: F401 - the whole package imports
    from appliance.mpc_party.protocols.dkls23 import local as dkls
    from appliance.mpc_party.protocols.frost import FROST_ED25519
    from appliance.mpc_party.protocols.frost import local as frost

    digest = hashlib.sha256(b"layers").digest()
    keys = dkls.run_dkg(3, 2)
    sig = dkls.sign_now([keys[0], keys[2]], digest)
    pub = coincurve.PublicKey(keys[0].public_key)
    assert pub.verify(coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(sig.to_compact())),
                      digest, hasher=None)
    shares = frost.run_dkg(3, 2, FROST_ED25519)
    esig = frost.sign(FROST_ED25519, [shares[1], shares[2]], b"layers")
    VerifyKey(shares[0].group_public_key).verify(b"layers", esig)
    assert "grpc" not in sys.modules and "pkcs11" not in sys.modules and "sqlite3" not in sys.modules
    print("pure ok")
""")


def test_protocols_run_without_grpc_pkcs11_sqlite() -> None:
    proc = subprocess.run([sys.executable, "-c", _PURE_RUN], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pure ok" in proc.stdout
