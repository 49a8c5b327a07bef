"""Several roles in one process (the "hybrid worker"): actor, reference and rollout sharing a GPU.

``colocate({"actor": ActorWorker, "ref": RefWorker})`` builds one :class:`Worker` class holding an
instance of each role. Every ``@register``ed method ``m`` of role ``r`` is re-exposed as ``r_m`` with
the same dispatch/execute modes, so one worker group serves all roles::

    Hybrid = colocate({"actor": ActorWorker, "ref": RefWorker})
    wg = RayWorkerGroup(pool, Hybrid, actor={"config": actor_cfg}, ref={"config": ref_cfg})
    wg.ref_compute_log_prob(batch); wg.actor_update(batch)

Each role's keyword dict goes to its constructor. Roles keep their own DP layout (``sp_size``):
``DP_COMPUTE`` for ``r_m`` asks role ``r``. Roles share the process, so they share one default
process group: call ``init_distributed`` from one role (it is a no-op once joined).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from longrl.controller.decorators import MethodSpec, register, registered_methods

if TYPE_CHECKING:
    from longrl.controller.dispatch import RankLayout
    from longrl.controller.worker import Worker

__all__ = ["colocate"]


def colocate(roles: Mapping[str, type[Worker]]) -> type[Worker]:
    """A Worker class running every role of ``roles`` (name -> Worker subclass) in one actor."""
    # Imported here: the package re-exports this function, and importing the package must not import torch.
    from longrl.controller.worker import Worker

    if not roles:
        raise ValueError("colocate needs at least one role")
    exposed: dict[str, tuple[str, str]] = {}  # group method -> (role, role method)
    for role, cls in roles.items():
        if not role.isidentifier():
            raise ValueError(f"colocate: role name {role!r} must be a Python identifier")
        if not (isinstance(cls, type) and issubclass(cls, Worker)):
            raise TypeError(f"colocate: role {role!r} must be a Worker subclass, got {cls!r}")
        for name in registered_methods(cls):
            prefixed = f"{role}_{name}"
            if prefixed in exposed:
                raise ValueError(f"colocate: {prefixed!r} is produced by two roles; rename a role or a method")
            exposed[prefixed] = (role, name)
    role_classes = dict(roles)

    def __init__(self: Any, **role_kwargs: Mapping[str, Any]) -> None:
        unknown = sorted(set(role_kwargs) - set(role_classes))
        if unknown:
            raise TypeError(f"colocated worker: keyword(s) {unknown} name no role; roles are {sorted(role_classes)}")
        Worker.__init__(self)
        self.roles = {role: cls(**dict(role_kwargs.get(role, {}))) for role, cls in role_classes.items()}

    def dispatch_layout(self: Any, method: str) -> RankLayout:
        role, name = exposed[method]
        return self.roles[role].dispatch_layout(name)

    namespace: dict[str, Any] = {"__init__": __init__, "dispatch_layout": dispatch_layout, "__module__": __name__}
    for prefixed, (role, name) in exposed.items():
        spec = registered_methods(role_classes[role])[name]
        namespace[prefixed] = _delegate(role, name, spec)
    return type("Colocated_" + "_".join(role_classes), (Worker,), namespace)


def _delegate(role: str, name: str, spec: MethodSpec) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.roles[role], name)(*args, **kwargs)

    method.__name__ = f"{role}_{name}"
    return register(spec.dispatch, spec.execute)(method)
