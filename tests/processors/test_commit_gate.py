import asyncio

from processors.commit_gate import CommitGate


async def test_a_commit_waits_for_the_inputs_inside_and_holds_new_ones_back() -> None:
    gate, order = CommitGate(), []
    release = asyncio.Event()

    async def slow_input() -> None:
        async with gate.input():
            order.append("input 1 in")
            await release.wait()
            order.append("input 1 out")

    async def commit() -> None:
        async with gate.commit():
            order.append("commit")

    async def late_input() -> None:
        async with gate.input():
            order.append("input 2")

    first = asyncio.create_task(slow_input())
    await asyncio.sleep(0)
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)
    assert gate.committing
    assert gate.inputs_inside == 1
    late = asyncio.create_task(late_input())
    await asyncio.sleep(0)
    assert order == ["input 1 in"]
    release.set()
    await asyncio.gather(first, committing, late)
    assert order == ["input 1 in", "input 1 out", "commit", "input 2"]
    assert not gate.committing
    assert gate.inputs_inside == 0


async def test_inputs_run_together_and_commits_one_at_a_time() -> None:
    gate, inside, most = CommitGate(), 0, 0

    async def one_input() -> None:
        nonlocal inside, most
        async with gate.input():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(one_input() for _ in range(5)))
    assert most == 5
    commits: list[str] = []

    async def commit(name: str) -> None:
        async with gate.commit():
            commits.append(f"{name} in")
            await asyncio.sleep(0)
            commits.append(f"{name} out")

    await asyncio.gather(commit("a"), commit("b"))
    assert commits == ["a in", "a out", "b in", "b out"]


async def test_an_input_that_fails_still_leaves_the_gate() -> None:
    gate = CommitGate()
    try:
        async with gate.input():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with asyncio.timeout(1):
        async with gate.commit():
            pass
