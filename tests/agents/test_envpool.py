"""Env pools: the reset/step contract, and Ray actors playing exactly what the process plays."""

from __future__ import annotations

import sys
import time

import gymnasium as gym
import psutil
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.agents.backends.scripted import ExpertPolicy, RandomPolicy
from earlyexp.agents.envpool import PoolConfig, ResetRequest, make_pool
from earlyexp.agents.prompting import ContextBlock
from earlyexp.agents.rollout import EpisodeSpec, RolloutEngine, write_jsonl
from earlyexp.envs.core.base import Snapshot

FL = "EarlyExp/FrozenLake-v0"
SOKO = "EarlyExp/Sokoban-v0"
SHOP = "EarlyExp/WebShop-v0"
FLIGHTS = "EarlyExp/FlightBooking-v0"
RAY_NAMES = ("raylet", "gcs_server", "ray::", "default_worker", "/ray/")


def processes(names=RAY_NAMES) -> list[str]:
    """Live descendants of this process whose name or command line holds one of ``names``."""
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            text = " ".join([proc.name(), *proc.cmdline()])
        except psutil.NoSuchProcess:
            continue
        if any(name in text for name in names):
            left.append(f"{proc.pid} {text[:120]}")
    return left


def processes_after(names=RAY_NAMES, timeout_s: float = 30.0) -> list[str]:
    """Those still alive once they had ``timeout_s`` to exit."""
    deadline = time.monotonic() + timeout_s
    while (left := processes(names)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


# ---------------------------------------------------------------- without a Ray running


def test_pool_config_rejects_negative_workers():
    with pytest.raises(ValueError, match="Expect workers >= 0"):
        PoolConfig(workers=-1)


@pytest.mark.parametrize("workers", [0, 2])
def test_make_pool_rejects_size_zero(workers):
    with pytest.raises(ValueError, match="at least one env"):
        make_pool(FL, 0, PoolConfig(workers=workers))


def test_a_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'earlyexp\[ray\]'"):
        make_pool(FL, 2, PoolConfig(workers=2))


@pytest.mark.timeout(180)
def test_a_pool_that_started_ray_reports_actor_errors_and_leaves_no_process():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray was started elsewhere in this process")
    with pytest.raises(RuntimeError, match="EarlyExp/NoSuchEnv-v0") as err:
        make_pool("EarlyExp/NoSuchEnv-v0", 3, PoolConfig(workers=2))
    assert "NoSuchEnv" in str(err.value.__cause__)  # gymnasium's own message, from the actor
    assert not ray.is_initialized()  # the pool started Ray, so it shut it down
    assert processes_after() == []


# ---------------------------------------------------------------- one local Ray per module


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on 127.0.0.1 for the module; afterwards no Ray process is left."""
    ray = pytest.importorskip("ray")
    from earlyexp.agents.envpool_ray import connect

    started = connect()
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    assert not started or processes()  # the check below sees Ray's processes
    yield ray
    if started:
        ray.shutdown()
        assert processes_after() == []


@pytest.fixture(params=["in-process", "ray"])
def pool_config(request):
    if request.param == "ray":
        request.getfixturevalue("local_ray")
        return PoolConfig(workers=2)
    return PoolConfig()


def direct_play(env_id, request, actions=()):
    """Observations of one env of this process: after reset, then after each action."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=request.seed, options={"split": request.split, "task": request.task})
    seen = [obs] + [env.step(a)[0] for a in actions]
    env.close()
    return seen


def test_reset_and_step_views_come_in_request_order(pool_config):
    pool = make_pool(FL, 3, pool_config)
    try:
        # slots 2 and 0 share an actor on Ray, slot 1 is on the other
        requests = [ResetRequest(2, 0, "test", 5), ResetRequest(1, 1, "ood", 1)]
        requests.append(ResetRequest(0, 2, "test", 3))
        views = pool.reset(requests)
        assert [v.obs for v in views] == [direct_play(FL, r)[0] for r in requests]
        assert all(v.action_help and v.expert_action is None and v.snapshot is None for v in views)
        steps = pool.step([0, 1, 2], ["nonsense", "nonsense", "nonsense"])
        by_slot = {r.slot: r for r in requests}
        assert [v.obs for v in steps] == [
            direct_play(FL, by_slot[s], ["nonsense"])[1] for s in range(3)
        ]
        assert [v.info["action_valid"] for v in steps] == [False, False, False]
        assert all(v.action_help == "" and v.reward == 0.0 and not v.done for v in steps)
    finally:
        pool.close()


def test_expert_actions_and_snapshots_only_when_asked(pool_config):
    pool = make_pool(FL, 2, pool_config, expert=True, snapshots=True)
    try:
        (view,) = pool.reset([ResetRequest(1, 0, "test", 2)])
        history = [view]
        while not view.done:
            assert isinstance(view.expert_action, str) and isinstance(view.snapshot, Snapshot)
            (view,) = pool.step([1], [view.expert_action])
            history.append(view)
        assert view.info["success"] and view.expert_action is None  # none once it is over
        assert isinstance(view.snapshot, Snapshot)
        # an episode started from a snapshot is at the snapshotted state, in another slot
        middle = history[1]
        (branch,) = pool.reset([ResetRequest(0, 9, "test", 2, middle.snapshot)])
        assert (branch.obs, branch.info) == (middle.obs, middle.info)
        assert branch.expert_action == middle.expert_action
        (after,) = pool.step([0], [middle.expert_action])
        assert (after.obs, after.info) == (history[2].obs, history[2].info)
    finally:
        pool.close()


def episode_specs(env_id, n):
    """``n`` test episodes, a train one, and two that start from snapshots with context."""
    first = RolloutEngine(ExpertPolicy()).run(
        env_id, [EpisodeSpec("test", 0, 0), EpisodeSpec("ood", 1, 5)], snapshots=True
    )
    specs = [EpisodeSpec("test", i, i % 3) for i in range(n)]
    retry = (ContextBlock("reflection", "Last time the first move was wasted."),)
    return [
        *specs,
        EpisodeSpec("train", None, 7),
        EpisodeSpec("test", 0, 0, context=retry, snapshot=first[0].snapshots[1], label="retry"),
        EpisodeSpec("ood", 1, 5, system="Play well.", snapshot=first[1].snapshots[-2]),
    ]


def assert_same_on_ray(env_id, specs, make_policy, tmp_path, num_envs=5):
    """Both pools play ``specs``: the same JSONL bytes and the same snapshots."""
    runs = {}
    for name, config in (("process", PoolConfig()), ("ray", PoolConfig(workers=2))):
        engine = RolloutEngine(make_policy(), pool=config)
        trajs = engine.run(env_id, specs, num_envs=num_envs, snapshots=True)
        runs[name] = (write_jsonl(trajs, tmp_path / f"{name}.jsonl").read_bytes(), trajs)
    (here, here_trajs), (there, there_trajs) = runs["process"], runs["ray"]
    assert here == there
    assert [t.snapshots for t in here_trajs] == [t.snapshots for t in there_trajs]
    assert sum(len(t.steps) for t in here_trajs) > len(specs)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("env_id, n", [(FL, 12), (SOKO, 4), (SHOP, 3)])
@pytest.mark.parametrize(
    "make_policy", [ExpertPolicy, lambda: RandomPolicy(3)], ids=["expert", "random"]
)
def test_ray_pool_plays_byte_identical_trajectories(local_ray, tmp_path, env_id, n, make_policy):
    assert_same_on_ray(env_id, episode_specs(env_id, n), make_policy, tmp_path)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_ray_pool_plays_flight_bookings_like_the_process_and_closes_browsers(local_ray, tmp_path):
    assert_same_on_ray(FLIGHTS, episode_specs(FLIGHTS, 3), ExpertPolicy, tmp_path, num_envs=4)
    assert processes_after(("chrom",)) == []


def on_actors(ray, pool, fn):
    """``fn(host)`` on each actor's :class:`EnvHost`, in actor order."""
    return ray.get([a.__ray_call__.remote(fn) for a in pool.actors])


@pytest.mark.timeout(120)
def test_ray_pool_deals_slots_round_robin_and_surfaces_env_errors(local_ray):
    from gymnasium.error import ResetNeeded

    pool = make_pool(FL, 5, PoolConfig(workers=2))
    try:
        assert len(set(on_actors(local_ray, pool, lambda _: __import__("os").getpid()))) == 2
        with pytest.raises(ResetNeeded, match="reset"):  # the env's own error, from the actor
            pool.step([3], ["right"])
        with pytest.raises(ValueError, match=r"Expect slots in \[0, 5\), actually: 5"):
            pool.step([5], ["right"])
        requests = [ResetRequest(s, 0, "test", 10 + s) for s in range(5)]
        views = pool.reset(requests)  # still usable after an env error
        assert [v.obs for v in views] == [direct_play(FL, r)[0] for r in requests]
        tasks = on_actors(local_ray, pool, lambda host: [e.unwrapped.task_index for e in host.envs])
        assert tasks == [[10, 12, 14], [11, 13]]  # slot s is env s // 2 of actor s % 2
        local_ray.kill(pool.actors[1])  # a worker dies: a call says so, without a hang
        deadline = time.monotonic() + 30  # ray.kill is asynchronous: bounded wait for it
        with pytest.raises(RuntimeError, match=f"Ray env hosts of {FL!r} alive"):
            while time.monotonic() < deadline:
                pool.step([0, 1], ["right", "right"])
                time.sleep(0.05)
    finally:
        with pytest.warns(UserWarning, match="did not close"):
            pool.close()
    assert not pool.actors and local_ray.is_initialized()  # the module's Ray stays up


def test_branching_gives_the_same_outcomes_on_either_pool(pool_config):
    from earlyexp.agents.branching import BranchConfig, branch, collect_expert_states
    from earlyexp.agents.prompting import PromptConfig

    prompt = PromptConfig(window=0)
    trajs = collect_expert_states(SOKO, 3, 0, prompt)
    config = BranchConfig(K=3, policy_share=0.0, invalid=1)
    here, stats = branch(SOKO, trajs, config, 0, 0, num_envs=3)
    there, stats2 = branch(SOKO, trajs, config, 0, 0, num_envs=3, pool_config=pool_config)
    assert stats == stats2 and stats.mismatches == 0
    assert [(s.t, s.expert, s.alternatives) for s in here] == [
        (s.t, s.expert, s.alternatives) for s in there
    ]
