"""Anti-rollback per publisher (issue 12 item 6): marks per (signing key, source), replay refused in
Enforce and Warn, a serial-less manifest then an older one with a serial refused."""

from __future__ import annotations

from datetime import timedelta

from trust_builders import NOW, Keyring, base_document, sign, to_bytes

from oneiric_operator.api.stackpolicy import PolicyMode
from oneiric_operator.manifests.verifying import decide
from oneiric_operator.trust.reasons import RejectionReason as R
from oneiric_operator.trust.rollback import HighWaterMark, publisher_key, raised_marks, supersedes
from oneiric_operator.trust.verification import verify_manifest


def at(hours: float) -> str:
    return (NOW - timedelta(hours=hours)).isoformat()


def apply_marks(keyring: Keyring, raw: bytes, marks: dict[str, HighWaterMark]) -> dict[str, HighWaterMark]:
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW, high_water=marks)
    assert result.ok and result.manifest is not None, result.message
    return {**marks, **raised_marks(marks, result.signed_by, result.manifest, result.digest)}


def test_a_mark_refuses_an_older_manifest_with_no_object_state_at_all(keyring: Keyring) -> None:
    """Deleting and recreating the object, or a second object under another name, has no status:
    the publisher's mark still refuses the older manifest."""
    marks = apply_marks(keyring, sign(base_document(serial=7), keyring.vendor), {})
    assert list(marks) == [publisher_key(keyring.vendor.public.key_id, "vendor-acme")]
    older = sign(base_document(serial=6), keyring.vendor)
    assert verify_manifest(
        older, policy=keyring.policy(), now=NOW
    ).ok  # positive control: no mark, no refusal
    result = verify_manifest(older, policy=keyring.policy(), now=NOW, high_water=marks)
    assert result.reason is R.REPLAY and "lower than the publisher's newest serial 7" in result.message
    newer = sign(base_document(serial=8), keyring.vendor)
    assert verify_manifest(newer, policy=keyring.policy(), now=NOW, high_water=marks).ok


def test_marks_are_per_source(keyring: Keyring) -> None:
    marks = apply_marks(keyring, sign(base_document(serial=7), keyring.vendor), {})
    other_feed = sign(base_document(serial=1, source="vendor-other"), keyring.vendor)
    assert verify_manifest(other_feed, policy=keyring.policy(), now=NOW, high_water=marks).ok


def test_a_serial_less_manifest_then_an_older_one_with_a_serial_is_refused(keyring: Keyring) -> None:
    serial_less = sign(base_document(serial=None, signed_at=at(1)), keyring.vendor)
    marks = apply_marks(keyring, serial_less, {})
    older_with_serial = sign(base_document(serial=99, signed_at=at(5)), keyring.vendor)
    result = verify_manifest(older_with_serial, policy=keyring.policy(), now=NOW, high_water=marks)
    assert result.reason is R.REPLAY and "older than the publisher's newest" in result.message
    first = verify_manifest(serial_less, policy=keyring.policy(), now=NOW)
    assert first.state is not None  # the object's own state has the same hole closed
    by_state = verify_manifest(older_with_serial, policy=keyring.policy(), now=NOW, last_verified=first.state)
    assert by_state.reason is R.REPLAY
    newer_with_serial = sign(base_document(serial=1, signed_at=at(0.5)), keyring.vendor)
    assert verify_manifest(newer_with_serial, policy=keyring.policy(), now=NOW, high_water=marks).ok


def test_warn_mode_refuses_an_unsigned_replay_and_keeps_the_state(keyring: Keyring) -> None:
    policy = keyring.policy()
    signed = verify_manifest(sign(base_document(serial=5), keyring.vendor), policy=policy, now=NOW)
    assert signed.state is not None and signed.manifest is not None
    marks = raised_marks({}, signed.signed_by, signed.manifest, signed.digest)
    unsigned_older = to_bytes(base_document(serial=4))
    for last, high_water in ((signed.state, None), (None, marks)):
        decision = decide(
            unsigned_older,
            detached_signature=None,
            policy=policy,
            mode=PolicyMode.WARN,
            last_verified=last,
            now=NOW,
            high_water=high_water,
        )
        assert not decision.accepted and decision.rejection is not None
        assert decision.rejection.reason is R.REPLAY
    unsigned_newer = decide(
        to_bytes(base_document(serial=6)),
        detached_signature=None,
        policy=policy,
        mode=PolicyMode.WARN,
        last_verified=signed.state,
        now=NOW,
        high_water=marks,
    )
    assert unsigned_newer.accepted and unsigned_newer.warned  # positive control: Warn still admits
    kept = unsigned_newer.state  # it records what is applied, but never lowers what a signed one must beat
    assert kept is not None and kept.digest == unsigned_newer.digest
    assert (kept.serial, kept.signed_at) == (signed.state.serial, signed.state.signed_at)
    enforce = decide(
        sign(base_document(serial=4), keyring.vendor),
        detached_signature=None,
        policy=policy,
        mode=PolicyMode.ENFORCE,
        last_verified=unsigned_newer.state,
        now=NOW,
        high_water=marks,
    )
    assert enforce.rejection is not None and enforce.rejection.reason is R.REPLAY


def test_marks_only_move_forward() -> None:
    five = HighWaterMark("a" * 64, 5, NOW)
    assert supersedes(HighWaterMark("b" * 64, 6, NOW), five)
    assert not supersedes(HighWaterMark("b" * 64, 4, NOW + timedelta(days=1)), five)
    assert not supersedes(HighWaterMark("b" * 64, None, NOW + timedelta(days=1)), five)
    dated = HighWaterMark("a" * 64, None, NOW)
    assert supersedes(HighWaterMark("b" * 64, 1, NOW), dated)
    assert not supersedes(HighWaterMark("b" * 64, 1, NOW - timedelta(seconds=1)), dated)
    assert HighWaterMark.from_json(five.to_json()) == five
    assert HighWaterMark.from_json({"digest": 1}) is None


def test_a_key_rotation_cannot_roll_back_to_the_old_keys_older_manifest(keyring: Keyring) -> None:
    """Issue 21 L3: during a rotation the policy trusts the old and the new key; once the new key's
    serial 12 is applied, the old key's serial 8 (above the old key's own mark 7) is a replay."""
    both = keyring.policy(keyring.vendor, keyring.second)
    marks = apply_marks(keyring, sign(base_document(serial=7), keyring.vendor), {})
    newer = verify_manifest(
        sign(base_document(serial=12), keyring.second), policy=both, now=NOW, high_water=marks
    )
    assert newer.ok and newer.manifest is not None, newer.message
    marks = {**marks, **raised_marks(marks, newer.signed_by, newer.manifest, newer.digest)}
    old_key_replay = sign(base_document(serial=8), keyring.vendor)
    # Positive control: the old key's own mark (7) alone lets serial 8 through.
    alone = {
        publisher_key(keyring.vendor.public.key_id, "vendor-acme"): marks[
            publisher_key(keyring.vendor.public.key_id, "vendor-acme")
        ]
    }
    assert verify_manifest(old_key_replay, policy=both, now=NOW, high_water=alone).ok
    result = verify_manifest(old_key_replay, policy=both, now=NOW, high_water=marks)
    assert result.reason is R.REPLAY and "lower than the publisher's newest serial 12" in result.message
    assert verify_manifest(
        sign(base_document(serial=13), keyring.vendor), policy=both, now=NOW, high_water=marks
    ).ok
