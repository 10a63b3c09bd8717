"""What a StackPolicy's status says: in effect, waiting for a key object, invalid entries, ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oneiric_operator.api.stackpolicy import KeyState, StackPolicySpec
from oneiric_operator.manifests.keys import KeyProblem, LoadedKeys
from oneiric_operator.runtime.policy_status import report, status_json
from oneiric_operator.trust import keys
from oneiric_operator.trust.policy import TrustedKey

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def spec(**fields: object) -> StackPolicySpec:
    return StackPolicySpec.model_validate(fields)


def key_ref(key_id: str) -> dict[str, object]:
    return {"id": key_id, "secretRef": {"name": "acme-keys", "key": "ed25519.pub"}}


def test_a_policy_without_keys_is_in_effect() -> None:
    result = report("default", spec(factoryAllowlist=["shop.adapters"]), None, LoadedKeys(), NOW)
    assert result.ready == (True, "InEffect", result.message)
    assert not result.reconciling[0] and not result.stalled[0] and not result.recheck
    assert "1 factory allowlist prefixes, 0 of 0 trusted keys loaded" in result.message


def test_a_missing_key_object_is_reconciling_with_state_missing_and_heals() -> None:
    problem = KeyProblem("acme-2026", KeyState.MISSING, "Secret acme-keys does not exist yet")
    missing = report(
        "default", spec(trustedKeys=[key_ref("acme-2026")]), None, LoadedKeys((), (problem,)), NOW
    )
    assert missing.ready[:2] == (False, "KeyMissing") and missing.reconciling[0] and not missing.stalled[0]
    assert [(k.id, k.state) for k in missing.keys] == [("acme-2026", KeyState.MISSING)]
    assert missing.recheck, "a missing object is looked up again: nothing notifies its creation"
    assert "waiting for trusted key acme-2026: Secret acme-keys does not exist yet" in missing.message

    public = keys.generate_private_key().public
    loaded = LoadedKeys((TrustedKey(public, name="acme-2026"),), ())
    healed = report("default", spec(trustedKeys=[key_ref("acme-2026")]), None, loaded, NOW)
    assert healed.ready[0] and [(k.state, k.fingerprint) for k in healed.keys] == [
        (KeyState.LOADED, public.key_id[:80])
    ]


def test_an_expired_key_says_so() -> None:
    public = keys.generate_private_key().public
    loaded = LoadedKeys((TrustedKey(public, not_after=NOW - timedelta(days=1), name="old"),), ())
    result = report("default", spec(trustedKeys=[key_ref("old")]), None, loaded, NOW)
    assert result.keys[0].state is KeyState.EXPIRED


def test_invalid_entries_stall_the_policy_with_what_to_fix() -> None:
    bad = KeyProblem("acme-2026", KeyState.INVALID, "not a public key")
    result = report(
        "default",
        spec(factoryAllowlist=["shop.adapters", "os.path"], trustedKeys=[key_ref("acme-2026")]),
        None,
        LoadedKeys((), (bad,)),
        NOW,
    )
    assert result.stalled[:2] == (True, "InvalidEntries") and not result.ready[0]
    assert "trusted key acme-2026: not a public key" in result.message
    assert "factoryAllowlist entry os.path allows nothing: its module is on the denylist" in result.message
    assert "shop.adapters allows nothing" not in result.message


def test_an_invalid_spec_and_a_policy_not_named_default_are_stalled() -> None:
    invalid = report("default", None, "spec.stackOrder: lists a source twice", LoadedKeys(), NOW)
    assert invalid.stalled[:2] == (True, "InvalidSpec") and "lists a source twice" in invalid.message
    other = report("team", spec(), None, LoadedKeys(), NOW)
    assert other.stalled[:2] == (True, "Ignored") and "only the StackPolicy named default" in other.message


def test_an_unchanged_report_keeps_the_transition_times() -> None:
    result = report("default", spec(), None, LoadedKeys(), NOW)
    first = status_json({}, 3, result, NOW)
    again = status_json(first, 3, result, NOW + timedelta(minutes=5))
    assert again == first
    assert {c["type"] for c in first["conditions"]} == {"Ready", "Reconciling", "Stalled"}
    assert all(c["observedGeneration"] == 3 for c in first["conditions"]) and first["observedGeneration"] == 3
