"""Tracking codes, report ids and citizen tokens drawn from the process's pool of kernel randomness."""

import base64
import hashlib
import hmac
import os
import uuid
from collections import Counter

from service.random_ids import random_bytes, uuid4
from service.reports.codes import ALPHABET, CODE_LENGTH, citizen_token, new_tracking_code, normalise_tracking_code


def test_every_character_of_the_alphabet_turns_up_at_every_position_of_a_code():
    codes = [new_tracking_code() for _ in range(20_000)]
    assert all(normalise_tracking_code(code) == code for code in codes)
    raw = [code.replace("-", "") for code in codes]
    for position in range(CODE_LENGTH):
        seen = Counter(code[position] for code in raw)
        assert set(seen) == set(ALPHABET), position
        # 20 000 / 31 is about 645 a character; a fair draw stays well within a third of it.
        assert min(seen.values()) > 430 and max(seen.values()) < 860, (position, seen)
    assert len(set(codes)) > 19_990


def test_a_forked_child_draws_other_codes_and_ids_than_its_parent():
    new_tracking_code(), uuid4()  # the parent's pool is filled before the fork
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only writes what it drew
        os.close(reading)
        drawn = [new_tracking_code() for _ in range(50)] + [str(uuid4()) for _ in range(50)]
        os.write(writing, "\n".join(drawn).encode())
        os._exit(0)
    os.close(writing)
    parent = [new_tracking_code() for _ in range(50)] + [str(uuid4()) for _ in range(50)]
    with os.fdopen(reading) as pipe:
        child_drawn = pipe.read().split("\n")
    os.waitpid(child, 0)
    assert len(child_drawn) == 100 and not set(child_drawn) & set(parent)


def test_report_ids_are_version_4_uuids_as_the_uuid_module_makes_them():
    ids = [uuid4() for _ in range(5000)]
    assert all(id_.version == 4 and id_.variant == uuid.RFC_4122 for id_ in ids)
    assert len(set(ids)) == len(ids)
    # The bits outside the version and variant are the kernel's, so each shows up both set and clear.
    set_bits = 0
    clear_bits = 0
    for id_ in ids:
        set_bits |= id_.int
        clear_bits |= ~id_.int
    version_and_variant = (0xF000 << 64) | (0xC000 << 48)
    assert set_bits & clear_bits & ((1 << 128) - 1) == ((1 << 128) - 1) & ~version_and_variant


def test_pool_slices_are_never_handed_out_twice():
    slices = [random_bytes(size) for size in (16, 5, 16, 7, 4096, 16, 5) * 200]
    assert [len(part) for part in slices] == [16, 5, 16, 7, 4096, 16, 5] * 200
    assert len({part for part in slices if len(part) >= 7}) == len([part for part in slices if len(part) >= 7])


def citizen_token_with_hmac_module(secret_key: str, report_id: uuid.UUID) -> str:
    """The token as it was first written, with the standard library's hmac."""
    keyed = hmac.new(secret_key.encode(), digestmod=hashlib.sha256)
    keyed.update(f"citizen:{report_id}".encode())
    return base64.urlsafe_b64encode(keyed.digest()[:24]).decode().rstrip("=")


def test_citizen_token_is_the_hmac_sha256_of_the_report_id_whatever_the_key():
    # Keys shorter than, as long as and longer than SHA-256's 64-byte block (a long one is hashed first).
    keys = ["", "k", "x" * 63, "x" * 64, "x" * 65, "y" * 300, "khóa-bí-mật-🔑", "change-me-in-production"]
    for key in keys:
        for _ in range(300):
            report_id = uuid.UUID(bytes=os.urandom(16))
            assert citizen_token(key, report_id) == citizen_token_with_hmac_module(key, report_id), key
