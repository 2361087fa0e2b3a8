"""Early-experience data generation: snapshot/restore branching against replaying the prefix.

At every expert state s_i of an episode, K alternatives are each executed once. With
snapshots (:mod:`earlyexp.agents.branching`) that costs one env step per alternative plus a
restore; an env without snapshots must reset and replay the expert prefix a_0..a_{i-1} before
each alternative: sum_i K (i + 1) steps per episode, O(K N^2). Both run here on the same
expert episodes and the same alternatives (uniform over the available actions, so no model
time is measured), in the same process; the figures are env steps, wall seconds and expert
states per second.

    .venv/bin/python benchmarks/early_experience.py --env EarlyExp/WebShop-v0 --episodes 30 --K 8
    .venv/bin/python benchmarks/early_experience.py --env EarlyExp/FlightBooking-v0 --episodes 3 --K 8
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import earlyexp.envs  # noqa: F401
from earlyexp.agents.branching import BranchConfig, branch, collect_expert_states
from earlyexp.agents.prompting import PromptConfig


def with_snapshots(env_id: str, trajs, K: int) -> tuple[int, float, int]:
    """Env steps and seconds of branching from snapshots (the expert episodes exist already)."""
    t0 = time.perf_counter()
    states, stats = branch(env_id, trajs, BranchConfig(K=K, policy_share=0.0), 0, 0, num_envs=1)
    seconds = time.perf_counter() - t0
    steps = sum(1 + len(s.alternatives) for s in states)  # the expert's branch + the K
    return steps, seconds, len(states)


def with_replay(env_id: str, trajs, states_alts: dict) -> tuple[int, float]:
    """The same alternatives, each after a reset and a replay of the expert prefix."""
    env = gym.make(env_id)
    steps, t0 = 0, time.perf_counter()
    for traj in trajs:
        actions = [s.action for s in traj.steps]
        for i in range(len(actions)):
            for alt in [actions[i], *states_alts[(traj.seed, i)]]:
                env.reset(seed=traj.seed, options={"split": traj.split, "task": traj.task})
                for a in actions[:i]:
                    env.step(a)
                env.step(alt)
                steps += i + 1
    seconds = time.perf_counter() - t0
    env.close()
    return steps, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="EarlyExp/WebShop-v0")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--K", type=int, default=8)
    args = p.parse_args()
    prompt = PromptConfig(window=0)
    t0 = time.perf_counter()
    trajs = collect_expert_states(args.env, args.episodes, 0, prompt, num_envs=1)
    expert_s = time.perf_counter() - t0
    expert_steps = sum(len(t.steps) for t in trajs)
    states, _ = branch(args.env, trajs, BranchConfig(K=args.K, policy_share=0.0), 0, 0, num_envs=1)
    alts = {(s.traj.seed, s.t): [o.action for o in s.alternatives] for s in states}
    snap_steps, snap_s, n = with_snapshots(args.env, trajs, args.K)
    replay_steps, replay_s = with_replay(args.env, trajs, alts)
    # both need the expert episodes (played once here, with snapshots)
    snap_steps, replay_steps = snap_steps + expert_steps, replay_steps + expert_steps
    snap_s, replay_s = snap_s + expert_s, replay_s + expert_s
    print(f"{args.env}: {args.episodes} expert episodes, {n} expert states, K={args.K}")
    print("| method | env steps | wall s | states/s |\n|---|---|---|---|")
    print(f"| snapshot/restore | {snap_steps} | {snap_s:.2f} | {n / snap_s:.1f} |")
    print(f"| replay the prefix | {replay_steps} | {replay_s:.2f} | {n / replay_s:.1f} |")
    print(
        f"fewer env steps: {replay_steps / snap_steps:.1f}x, less wall time: {replay_s / snap_s:.1f}x"
    )


if __name__ == "__main__":
    main()
