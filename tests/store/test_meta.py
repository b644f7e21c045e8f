"""Facts about the database on both dialects: a claim taken only when absent or still stale."""

from __future__ import annotations


def test_a_claim_wins_only_when_absent_or_replacing_what_it_read(db):
    assert db.claim_meta("up", "first") == "first"
    assert db.claim_meta("up", "second") == "first"  # taken: the caller learns by whom
    assert db.claim_meta("up", "second", replacing="stale") == "first"  # not what it read: no change
    assert db.claim_meta("up", "second", replacing="first") == "second"
    db.delete_meta("up", value="someone else's")
    assert db.claim_meta("up", "third") == "second"
    db.delete_meta("up", value="second")
    assert db.claim_meta("up", "third", replacing="second") == "third"  # removed meanwhile: inserted


def test_the_world_is_stamped_once(db):
    assert db.data_world() is None
    db.claim_world("real")
    db.claim_world("real")
    assert db.data_world() == "real"
