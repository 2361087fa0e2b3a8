"""Early-experience data generation: snapshot/restore branching against replaying the prefix.

At every expert state s_i of an episode, K alternatives are each executed once. With
snapshots (:mod:`earlyexp.agents.branching`) that costs one env step per alternative plus a
restore (and the check that the restored env renders the observation it had); an env without
snapshots must reset and replay the expert prefix a_0..a_{i-1} before each alternative:
sum_i K (i + 1) steps per episode, O(K N^2). Both sides summarize each outcome (the IWM
target), so both make the same data. The ratios are printed with the expert episodes counted
on both sides (what generating the data costs) and without them (branching alone); the
step ratio grows with the episode length N (about (N + 1) / 2). Both run here on the same
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
from earlyexp.envs.core.base import text_env


def with_snapshots(env_id: str, trajs, K: int) -> tuple[int, float, int]:
    """Env steps and seconds of branching from snapshots (the expert episodes exist already)."""
    t0 = time.perf_counter()
    states, stats = branch(env_id, trajs, BranchConfig(K=K, policy_share=0.0), 0, 0, num_envs=1)
    seconds = time.perf_counter() - t0
    steps = sum(1 + len(s.alternatives) for s in states)  # the expert's branch + the K
    return steps, seconds, len(states)


def with_replay(env_id: str, trajs, states_alts: dict) -> tuple[int, float]:
    """The same alternatives, each after a reset and a replay of the expert prefix.

    Each alternative's outcome gets the same next-state summary (the IWM target) as in
    branching, so both sides produce the same data; only the desync check after a restore
    is branching's own cost.
    """
    env = gym.make(env_id)
    raw = text_env(env)
    steps, t0 = 0, time.perf_counter()
    for traj in trajs:
        actions = [s.action for s in traj.steps]
        for i in range(len(actions)):
            for alt in [actions[i], *states_alts[(traj.seed, i)]]:
                before, _ = env.reset(
                    seed=traj.seed, options={"split": traj.split, "task": traj.task}
                )
                for a in actions[:i]:
                    before, *_ = env.step(a)
                obs, _, _, _, info = env.step(alt)
                raw.summarize(obs, info, previous=before)
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
    print(f"{args.env}: {args.episodes} expert episodes, {n} expert states, K={args.K}")
    print("| method | env steps | wall s | states/s |\n|---|---|---|---|")
    # both need the expert episodes (played once here, with snapshots): with them, then without
    for label, steps, secs in (("", expert_steps, expert_s), (", branching alone", 0, 0.0)):
        a_steps, a_s = snap_steps + steps, snap_s + secs
        b_steps, b_s = replay_steps + steps, replay_s + secs
        print(f"| snapshot/restore{label} | {a_steps} | {a_s:.2f} | {n / a_s:.1f} |")
        print(f"| replay the prefix{label} | {b_steps} | {b_s:.2f} | {n / b_s:.1f} |")
        print(f"| fewer env steps{label}: {b_steps / a_steps:.1f}x, less wall time: "
              f"{b_s / a_s:.1f}x | | | |")  # fmt: skip
    mean_n = expert_steps / len(trajs)
    print(f"expert episodes of {mean_n:.1f} steps on average: an action branched at step i "
          "costs i + 1 env steps when replayed and 1 from a snapshot, so the step ratio grows "
          f"with the episode length (about (N + 1) / 2 = {(mean_n + 1) / 2:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
