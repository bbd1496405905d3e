"""One active controller among its replicas: leader election on a coordination.k8s.io Lease.

Owns running the client's own ``kubernetes.leaderelection`` over its ``LeaseLock``: acquire, renew
every ``retry`` seconds, give up after ``renew_deadline``. ``lead`` runs in a thread while
this replica holds the Lease; ``run_elected`` returns when the Lease is lost, and the caller
exits so that the Deployment restarts it as a follower (the client's documented pattern: a
callback that lost its lease must not keep working).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

logger = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_PERIOD_SECONDS = 2


def run_elected(*, lease_name: str, namespace: str, identity: str,
                lead: Callable[[], None], stopped: Callable[[], None]) -> None:
    """Block: wait for the Lease, ``lead`` while holding it, return once it is lost."""
    lock = LeaseLock(lease_name, namespace, identity)  # type: ignore[no-untyped-call]
    settings = electionconfig.Config(  # type: ignore[no-untyped-call]
        lock, LEASE_DURATION_SECONDS, RENEW_DEADLINE_SECONDS, RETRY_PERIOD_SECONDS, lead,
        stopped)
    logger.info("waiting for the Lease %s/%s as %s", namespace, lease_name, identity)
    leaderelection.LeaderElection(settings).run()  # type: ignore[no-untyped-call]
