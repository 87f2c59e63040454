"""Keyring files, their errors, and rotating keys without dropping traffic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hierclust.codec import (
    Decoded,
    Dropped,
    DropReason,
    Keyring,
    KeyringError,
    generate_keyring_file,
    load_keyring,
    parse_keyring,
    write_keyring_file,
)
from tests.codec.samples import SECRET_1, SECRET_2, Beat, codec

BEAT = Beat(view_id=1, digest=())
HEX_1 = SECRET_1.hex()


def test_rotation_without_downtime() -> None:
    old = Keyring(1, {1: SECRET_1})
    a, b = codec(1, ring=old), codec(2, ring=old)
    assert isinstance(b.decode(a.encode(BEAT, 2)), Decoded)

    # Step 1: everyone accepts key 2; still signs with key 1.
    both = old.with_key(2, SECRET_2)
    a.keyring = b.keyring = both
    result = b.decode(a.encode(BEAT, 2))
    assert isinstance(result, Decoded) and result.key_id == 1

    # Step 2: a switches to primary 2 first; b (not switched yet) still accepts it, and a still
    # accepts b's datagrams signed with key 1.
    a.keyring = both.with_primary(2)
    result = b.decode(a.encode(BEAT, 2))
    assert isinstance(result, Decoded) and result.key_id == 2
    assert isinstance(a.decode(b.encode(BEAT, 1)), Decoded)
    b.keyring = both.with_primary(2)
    late = codec(3, ring=old).encode(BEAT, 2)  # a straggler still on the old keyring

    # Step 3: key 1 removed: the straggler is refused, new traffic flows.
    b.keyring = b.keyring.without_key(1)
    refused = b.decode(late)
    assert isinstance(refused, Dropped) and refused.reason is DropReason.UNKNOWN_KEY
    result = b.decode(a.encode(BEAT, 2))
    assert isinstance(result, Decoded) and result.key_id == 2
    assert b.counters.dropped[DropReason.UNKNOWN_KEY] == 1


def test_file_round_trip_and_generate(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    ring = generate_keyring_file(path, key_id=7, token_bytes=lambda n: b"\x01" * n)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_keyring(path) == ring
    assert ring.primary_id == 7 and ring.primary_secret == b"\x01" * 32
    with pytest.raises(KeyringError, match="already exists"):
        generate_keyring_file(path)
    fresh = generate_keyring_file(path, overwrite=True)
    assert len(fresh.primary_secret) == 32 and fresh.primary_secret != b"\x01" * 32
    rotated = fresh.with_key(fresh.next_key_id(), SECRET_2, primary=True)
    write_keyring_file(path, rotated)
    loaded = load_keyring(path)
    assert loaded.key_ids == (1, 2) and loaded.primary_id == 2
    assert loaded.secret(1) == fresh.primary_secret


def test_repr_and_errors_never_show_secrets() -> None:
    ring = Keyring(1, {1: SECRET_1})
    assert HEX_1 not in repr(ring) and "Keyring(primary_id=1" in repr(ring)
    text = f'primary = 1\n[keys]\n1 = "{HEX_1}"\n2 = "{HEX_1}zz"\n'
    with pytest.raises(KeyringError) as info:
        parse_keyring(text, "k.toml")
    assert HEX_1 not in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("primary = \n", "", "not valid TOML"),
        (f'primary = 1\ncolour = "red"\n[keys]\n1 = "{HEX_1}"\n', "colour", "unknown key"),
        (f'[keys]\n1 = "{HEX_1}"\n', "primary", "missing"),
        (f'primary = "one"\n[keys]\n1 = "{HEX_1}"\n', "primary", "expected a key id"),
        (f'primary = 2\n[keys]\n1 = "{HEX_1}"\n', "primary", "not under [keys]"),
        ("primary = 1\n", "keys", "missing"),
        ("primary = 1\n[keys]\n", "keys", "no keys"),
        (f'primary = 1\n[keys]\nfirst = "{HEX_1}"\n', "keys.first", "whole number"),
        (f'primary = 1\n[keys]\n70000 = "{HEX_1}"\n', "keys.70000", "from 0 to 65535"),
        ('primary = 1\n[keys]\n1 = "abcd"\n', "keys.1", "got 2 bytes"),
        ('primary = 1\n[keys]\n1 = "not hex at all"\n', "keys.1", "not hex"),
        ("primary = 1\n[keys]\n1 = 12345\n", "keys.1", "got a int"),
    ],
)
def test_keyring_file_errors_name_file_and_key(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = tmp_path / "cluster.keys"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyringError) as info:
        load_keyring(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: ")
    assert expected in message
    assert info.value.source == str(path) and info.value.key == key


def test_unreadable_oversized_and_binary_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(KeyringError, match=rf"^{missing}: cannot read keyring file: No such file"):
        load_keyring(missing)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (64 * 1024 + 1))
    big.chmod(0o600)
    with pytest.raises(KeyringError, match="larger than 65536 bytes"):
        load_keyring(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    binary.chmod(0o600)
    with pytest.raises(KeyringError, match="not UTF-8"):
        load_keyring(binary)


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o644, "its group and other users"),
        (0o640, "its group"),
        (0o604, "other users"),
        (0o620, "its group"),  # writable by the group: someone could swap the keys
    ],
)
def test_a_keyring_others_can_access_is_refused_with_the_fix(
    tmp_path: Path, mode: int, who: str
) -> None:
    path = tmp_path / "keys.toml"
    generate_keyring_file(path)
    path.chmod(mode)
    with pytest.raises(KeyringError) as info:
        load_keyring(path)
    assert str(info.value) == (
        f"{path}: mode {mode:04o} lets {who} access the keys; "
        f"make it private with `chmod 600 {path}`"
    )
    path.chmod(0o600)  # the fix the message names works
    assert load_keyring(path).key_ids == (1,)
    path.chmod(0o400)  # read-only for the owner is private too
    assert load_keyring(path).key_ids == (1,)


def test_keyring_limits() -> None:
    with pytest.raises(KeyringError, match="keys.1: secret of 8 bytes"):
        Keyring(1, {1: b"x" * 8})
    with pytest.raises(KeyringError, match="at most 16"):
        Keyring(1, dict.fromkeys(range(17), SECRET_1))
    with pytest.raises(KeyringError, match="cannot remove the primary"):
        Keyring(1, {1: SECRET_1, 2: SECRET_2}).without_key(1)
    assert Keyring(0xFFFF, {0xFFFF: SECRET_1, 0: SECRET_2}).next_key_id() == 1
