from manager.heartbeats import MASS_FACTOR, silent_nodes

NODES = [f"n{i}" for i in range(10)]


def test_nodes_silent_past_the_limit_are_down() -> None:
    seen = {n: 100.0 for n in NODES}
    seen["n3"] = 96.0
    d = silent_nodes(NODES, seen, default_seen=0.0, now=100.5, limit=3.0)
    assert d.down == ["n3"] and d.held == []


def test_a_minority_goes_down_at_the_usual_time() -> None:
    seen = {n: (90.0 if i < 5 else 100.0) for i, n in enumerate(NODES)}
    d = silent_nodes(NODES, seen, default_seen=0.0, now=100.0, limit=3.0)
    assert d.down == NODES[:5] and d.held == []


def test_a_mass_silence_is_held_for_longer_then_marked_down() -> None:
    seen = {n: (100.0 if n == "n0" else 95.0) for n in NODES}
    d = silent_nodes(NODES, seen, default_seen=0.0, now=100.0, limit=3.0)
    assert d.down == [] and d.held == NODES[1:]
    later = 95.0 + 3.0 * MASS_FACTOR + 0.1
    seen["n0"] = later  # the one node still heard from
    d = silent_nodes(NODES, seen, default_seen=0.0, now=later, limit=3.0)
    assert d.down == NODES[1:] and d.held == []


def test_small_clusters_have_no_mass_rule() -> None:
    nodes = ["a", "b", "c"]
    d = silent_nodes(nodes, {"a": 100.0}, default_seen=90.0, now=100.0, limit=3.0)
    assert d.down == ["b", "c"]


def test_unheard_nodes_count_from_the_default() -> None:
    d = silent_nodes(["a"], {}, default_seen=99.0, now=100.0, limit=3.0)
    assert d.down == []
