"""pack_pair, the send path's encoder of pair frames, agrees with pack_fields:
the same bytes for every term, the same error (class and words) for every term
that cannot be sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rusm.actors.pid import Pid, Ref
from rusm.net import terms
from rusm.net.terms import UnsendableTerm, pack_fields, pack_pair

ROOTS4 = ["", "", "", ""]
ROOTS5 = ["", "", "", "", ""]

node_names = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True)
serials = st.integers(0, 2**64 - 1)
pids = st.builds(Pid, node_names, serials, st.integers(0, 2**32 - 1))
refs = st.builds(Ref, node_names, serials)
bad = st.sampled_from([
    2**64, -(2**63) - 1, "\udc80", {1, 2}, object(), Pid("bad node", 1, 1), Ref("", 3),
    [[[[[[[[1]]]]]]]], (((((((((1,),),),),),),),),), frozenset(), 1j,
])
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=300) | pids | refs
)
terms_st = st.recursive(
    scalars | bad,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers() | pids, inner, max_size=3)
    ),
    max_leaves=16,
)


def outcome(encode: Any, *args: Any) -> Any:
    try:
        return encode(*args)
    except Exception as e:
        return type(e), str(e)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(pids | bad, pids | node_names | st.just("") | bad, refs | bad | st.none(), terms_st,
       st.sampled_from([10, 17, 18]), st.sampled_from([1, 2, 3, 6, 32]))
def test_pack_pair_is_pack_fields(src: Any, dst: Any, ref: Any, term: Any, type_: int,
                                  depth: int) -> None:
    if ref is None:
        roots, fields = ROOTS4, [type_, src, dst, term]
    else:
        roots, fields = ROOTS5, [type_, src, dst, ref, term]
    want = outcome(pack_fields, fields, roots, depth)
    assert outcome(pack_pair, type_, src, dst, ref, term, roots, depth) == want
    # And again, now that a (src, dst) prefix that could be sent is cached.
    assert outcome(pack_pair, type_, src, dst, ref, term, roots, depth) == want


def test_a_bad_pid_is_never_cached_and_a_good_one_is() -> None:
    src, dst = Pid("london", 1, 1), Pid("tokyo", 2, 2)
    pack_pair(10, src, dst, None, b"x", ROOTS4, 32)
    assert terms._heads_out[(id(src), id(dst))][2] == pack_fields([src, dst], ["", ""], 32)[1:]
    bad_src = Pid("bad node", 1, 1)
    with pytest.raises(UnsendableTerm):
        pack_pair(10, bad_src, dst, None, b"x", ROOTS4, 32)
    assert (id(bad_src), id(dst)) not in terms._heads_out


def test_the_prefix_cache_stays_bounded() -> None:
    dst = Pid("tokyo", 2, 2)
    for i in range(terms._CACHE_SIZE + 10):
        pack_pair(10, Pid("london", i, 1), dst, None, i, ROOTS4, 32)
    assert len(terms._heads_out) <= terms._CACHE_SIZE
