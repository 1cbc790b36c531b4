"""`--ray local` starts a cluster that listens on loopback only (issue 12): every socket its processes
listen on is bound to 127.0.0.1 / ::1, never to every interface or the machine's public address."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT

pytest.importorskip("ray")

# Run in a fresh interpreter: a cluster already started in this process (test_distributed's) is reused, and
# Ray reads its address settings at import.
_SCRIPT = textwrap.dedent(
    """
    import ipaddress, json, os
    from faceage_video.scale.plan import RayOptions
    from faceage_video.scale.pool import RayPool
    import ray
    from ray.thirdparty_files import psutil

    with RayPool(RayOptions(address="local", actors=1)) as pool:
        ray.get(ray.remote(lambda: 1).remote())  # a worker process is up too
        me = psutil.Process(os.getpid())
        pids = {p.pid for p in [me, *me.children(recursive=True)]}
        bound = sorted({c.laddr.ip for c in psutil.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN and c.pid in pids})
        print(json.dumps({"node": ray.util.get_node_ip_address(), "bound": bound}))
    """
)


@pytest.mark.integration
def test_a_local_ray_cluster_listens_on_loopback_only() -> None:
    import ipaddress
    import json

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=240, env=env, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["node"] == "127.0.0.1"
    assert got["bound"], "no listening socket found: the check saw nothing"
    public = [ip for ip in got["bound"] if not ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback]
    assert public == [], f"the local cluster listens beyond loopback on {public}"
