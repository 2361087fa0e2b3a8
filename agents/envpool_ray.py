"""Envs on Ray actors: ``workers`` :class:`~earlyexp.agents.envpool.EnvHost` actors.

:class:`RayPool` has the methods of :class:`~earlyexp.agents.envpool.InProcessPool`. Slots
are dealt round-robin: with ``W = min(workers, size)`` actors, slot ``s`` is env ``s // W``
of actor ``s % W`` (5 slots on 2 actors: slots 0, 2, 4 on the first, 1, 3 on the second), so
any ``W`` consecutive slots sit on ``W`` different actors. A reset or a step groups
its requests by actor, makes ONE remote call per actor, waits for all of them together and
returns the views in request order; the actors run their envs in parallel.

Connecting (:func:`connect`): a Ray already initialized in this process is used as it is;
else ``ray.init(address=config.ray_address)`` joins a cluster (``auto``, ``ray://host:port``;
every node needs ``earlyexp`` installed); else a local, single-node Ray starts, reachable on
127.0.0.1 only, with no dashboard, no usage stats and the actors' output kept in Ray's log
files. :meth:`RayPool.close` shuts Ray down only when the pool initialized it.

Actors reserve no CPU (``num_cpus=0``): an env host mostly waits on its env (a browser, a
search index) or on the driver, and two workers must start on a 2-core machine beside the
driver. An error raised by an env comes back from the call as that exception (Ray's
``RayTaskError`` subclasses the env's exception class, with the remote traceback); an actor
that cannot start or dies raises :class:`RuntimeError` naming the env id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from earlyexp.agents.envpool import (
    BranchRequest,
    BranchResult,
    EnvHost,
    EnvView,
    PoolConfig,
    ResetRequest,
)

EXTRA = "pip install 'earlyexp[ray]'"
READY_TIMEOUT_S = 300.0
"""How long the actors may take to start (a worker process, ``import earlyexp.envs``, envs)."""
CLOSE_TIMEOUT_S = 60.0
"""How long the actors may take to close their envs (browsers) before they are killed."""
LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Environment of a local Ray (kept where the user set them). The second variable is Ray's
switch for single-node Ray: the node's address becomes 127.0.0.1 and every Ray server binds
to loopback only (on Linux Ray otherwise advertises the machine's address and binds all)."""


def import_ray() -> Any:
    """Return the ``ray`` module, or raise ModuleNotFoundError naming the extra to install."""
    try:
        import ray
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"Expect ray installed for an env pool with workers > 0 ({EXTRA}), actually: {e}",
            name="ray",
        ) from e
    return ray


def connect(address: str | None = None) -> bool:
    """Make sure Ray is initialized in this process; True when this call initialized it.

    Args:
        address: a cluster to join (``auto``, ``ray://host:port``); None starts a local Ray
            bound to 127.0.0.1. Ignored when Ray is already initialized.

    Returns:
        True when this call ran ``ray.init`` (the caller then owns ``ray.shutdown``).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        ray.init(address=address, **quiet)
        return True
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    with _single_node():
        ray.init(
            include_dashboard=False, _node_ip_address="127.0.0.1", **quiet
        )  # CPUs: Ray's count
    return True


@contextlib.contextmanager
def _single_node() -> Iterator[None]:
    """While ``ray.init`` runs: Ray's single-node switch as the environment now says.

    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` is read from
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when ray is first imported; a ray imported before
    :func:`connect` set the variable would otherwise turn 127.0.0.1 into the machine's address.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without the switch: its own defaults
        yield
        return
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if before is None:  # pragma: no cover - ditto
        yield
        return
    flag = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0").lower() in ("1", "true")
    ray_constants.ENABLE_RAY_CLUSTER = flag
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


class RayPool:
    """``size`` env slots of ``env_id`` on ``config.workers`` Ray actors (module docstring).

    Args:
        env_id: the registered id.
        size: env slots (at least 1).
        config: ``workers`` (at least 1) and the Ray address.
        env_kwargs: constructor arguments for ``gym.make``.
        expert: fill :attr:`EnvView.expert_action` while episodes run.
        snapshots: fill :attr:`EnvView.snapshot` at every state.
    """

    def __init__(
        self,
        env_id: str,
        size: int,
        config: PoolConfig,
        env_kwargs: dict[str, Any] | None = None,
        expert: bool = False,
        snapshots: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError(f"Expect a pool of at least one env, actually: {size}")
        if config.workers < 1:
            raise ValueError(f"Expect workers >= 1 for a Ray pool, actually: {config.workers}")
        self.ray = import_ray()
        self.env_id, self.size = env_id, size
        self.workers = min(config.workers, size)
        self.actors: list[Any] = []
        self.owns_ray = connect(config.ray_address)
        self.closed = False
        try:
            host = self.ray.remote(num_cpus=0, max_restarts=0, scheduling_strategy="SPREAD")
            host_cls = host(EnvHost)
            for k in range(self.workers):
                n = len(range(k, size, self.workers))
                self.actors.append(host_cls.remote(env_id, n, env_kwargs, expert, snapshots))
            self._get([a.__ray_ready__.remote() for a in self.actors], READY_TIMEOUT_S)
        except BaseException:
            self._teardown()
            raise

    def reset(self, requests: Sequence[ResetRequest]) -> list[EnvView]:
        """Start one episode per request; views in request order."""
        groups = self._group([r.slot for r in requests])
        refs = [
            self.actors[k].reset.remote(
                [
                    dataclasses.replace(requests[i], slot=requests[i].slot // self.workers)
                    for i in idx
                ]
            )
            for k, idx in groups.items()
        ]
        return self._gather(groups, refs, len(requests))

    def step(self, slots: Sequence[int], actions: Sequence[str]) -> list[EnvView]:
        """Step ``slots[i]`` with ``actions[i]``; views in the same order."""
        if len(slots) != len(actions):
            raise ValueError(
                f"Expect one action per slot, actually: {len(slots)} slots, {len(actions)} actions"
            )
        groups = self._group(slots)
        refs = [
            self.actors[k].step.remote(
                [slots[i] // self.workers for i in idx], [actions[i] for i in idx]
            )
            for k, idx in groups.items()
        ]
        return self._gather(groups, refs, len(slots))

    def branch(self, requests: Sequence[BranchRequest]) -> list[BranchResult]:
        """Try each request's actions from its snapshot on the owning actor; results in order."""
        groups = self._group([r.slot for r in requests])
        refs = [
            self.actors[k].branch.remote(
                [
                    dataclasses.replace(requests[i], slot=requests[i].slot // self.workers)
                    for i in idx
                ]
            )
            for k, idx in groups.items()
        ]
        return self._gather(groups, refs, len(requests))

    def close(self) -> None:
        """Close every env (a remote close per actor), kill the actors, end an owned Ray.

        An actor already dead or stuck past :data:`CLOSE_TIMEOUT_S` gives a warning; an env
        whose ``close`` raised re-raises here, once every actor is gone.
        """
        if self.closed:
            return
        failure: Exception | None = None
        try:
            for ref in [a.close.remote() for a in self.actors]:
                try:
                    self._get([ref], CLOSE_TIMEOUT_S)
                except RuntimeError as e:
                    warnings.warn(
                        f"Ray env hosts of {self.env_id!r} did not close: {e}", stacklevel=2
                    )
                except Exception as e:  # noqa: BLE001 - an env's close raised: after teardown
                    failure = failure or e
        finally:
            self._teardown()
        if failure is not None:
            raise failure

    def _group(self, slots: Sequence[int]) -> dict[int, list[int]]:
        """Positions in ``slots`` by owning actor (each actor keeps the request order)."""
        if self.closed:
            raise ValueError(f"Expect an open pool, actually: the {self.env_id!r} pool is closed")
        groups: dict[int, list[int]] = {}
        for i, slot in enumerate(slots):
            if not 0 <= slot < self.size:
                raise ValueError(f"Expect slots in [0, {self.size}), actually: {slot}")
            groups.setdefault(slot % self.workers, []).append(i)
        return groups

    def _gather(self, groups: dict[int, list[int]], refs: list[Any], n: int) -> list[EnvView]:
        """Wait for one call per actor and put the views back in request order."""
        at: dict[int, EnvView] = {}
        for idx, views in zip(groups.values(), self._get(refs), strict=True):
            at.update(zip(idx, views, strict=True))
        return [at[i] for i in range(n)]

    def _get(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        """``ray.get`` of ``refs``; a dead, unstartable or stuck actor raises RuntimeError."""
        exc = self.ray.exceptions
        try:
            return self.ray.get(refs, timeout=timeout)
        except exc.RayActorError as e:
            raise RuntimeError(
                f"Expect the Ray env hosts of {self.env_id!r} alive, actually: {e}"
            ) from e
        except exc.GetTimeoutError as e:
            raise RuntimeError(
                f"Expect the Ray env hosts of {self.env_id!r} to answer within {timeout} s, "
                f"actually: no answer"
            ) from e

    def _teardown(self) -> None:
        """Kill the actors and shut down a Ray this pool initialized."""
        self.closed = True
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone with its node
                pass
        self.actors = []
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.owns_ray = False
