"""Giving freed memory back: callable anywhere, and at most once per interval in a hot loop."""

from neoqa import memory


def test_release_runs_and_the_releaser_keeps_its_interval(monkeypatch):
    memory.release()                              # glibc: malloc_trim; elsewhere nothing, never an error
    calls = []
    monkeypatch.setattr(memory, "release", lambda: calls.append(1))
    clock = iter([0.0, 0.3, 0.6, 1.1, 1.2, 2.5])
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(clock))
    r = memory.Releaser(seconds=1.0)              # starts its clock at 0.0
    for _ in range(5):
        r.tick()                                  # at 0.3, 0.6: nothing; 1.1: release; 1.2: nothing; 2.5: release
    assert len(calls) == 2
