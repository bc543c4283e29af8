"""The lab itself: hosts that reach each other only as the network allows, and leave nothing behind.

A smoke test of the fixture the multi-host and fault tests build on: a broker, a store, a gateway
and Pis on four hosts; the store's cable pulled for a while and a Pi<->broker partition, and every
reading lands once; no host opened another's files; the namespaces, links and directories are gone
afterwards, and a crashed run's leftovers are removed by the next run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hosts.lab import Lab
from tests.hosts.network import CLAIMS, ip
from tests.hosts.pis import expected
from tests.hosts.services import (
    HostInfluxD,
    HostMosquitto,
    gateway_metrics,
    metric_total,
    pis_status,
    start_gateway,
    start_pis,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.mosquitto, pytest.mark.influxdb]

ORG = "lab-city"


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def test_hosts_reach_each_other_only_as_the_network_allows_and_leave_nothing(lab: Lab) -> None:
    """Test that a gateway on its own host lands every reading of the Pis' host once in the store's
    host, through a pulled store cable and a Pi<->broker partition, and no host opens another's files."""
    broker = HostMosquitto(lab.host("broker")).start()
    store = HostInfluxD(lab.host("store")).start()
    gw_host, pis_host = lab.host("gateway"), lab.host("pis")
    # A short write timeout: the pulled cable shows as failed writes within seconds.
    start_gateway(gw_host, broker=broker, sink_url=f"{store.sink_url}&timeout=2", client_id="lab-gw")

    # Faults act on the network, not on the processes.
    assert pis_host.can_reach(broker.address, broker.port)
    with lab.partitioned("pis", "broker"):
        assert not pis_host.can_reach(broker.address, broker.port)
        assert gw_host.can_reach(broker.address, broker.port), "a partition is only between two hosts"
    assert pis_host.can_reach(broker.address, broker.port)

    plan = {
        "org": ORG, "devices": [f"pi-{i}" for i in range(4)], "packs": 150, "records": 10,
        "rate": 200, "start": 1_750_000_000.0, "timeout": 120,
    }  # fmt: skip
    total = len(list(expected(plan)))
    pis = start_pis(pis_host, broker, plan)
    wait_until(lambda: store.count() >= 1000, timeout=60, what="the first readings in the store")
    with lab.link_cut("store"):
        assert not gw_host.can_reach(store.host, store.port)
        wait_until(
            lambda: metric_total(gateway_metrics(gw_host), "suitcase_gateway_write_failures_total") >= 1,
            timeout=60,
            what="a failed write to the store",
        )
        with lab.partitioned("pis", "broker"):
            time.sleep(1.0)
    assert pis.wait(120) == 0, pis.log_tail()
    assert pis_status(pis_host)["acked"] == len(plan["devices"]) * plan["packs"]
    wait_until(lambda: store.count() >= total, timeout=90, what=f"all {total} readings in the store")
    time.sleep(0.5)
    assert store.count() == total

    trespasses = lab.trespasses()
    assert trespasses == [], "\n".join(map(str, trespasses))
    assert lab.watcher.samples > 20
    for name in ("broker", "store", "gateway"):  # the watcher does see each host's own files
        assert lab.watcher.own_paths.get(name), f"no file of {name} seen: the watcher sees nothing"


def test_a_lab_removes_everything_and_a_crashed_one_is_cleaned_by_the_next(tmp_path: Path) -> None:
    """Test that closing a lab leaves no namespace, link, claim or directory, and that the namespaces
    of a run killed with -9 (no teardown at all) are removed when the next lab is made."""
    crashed = subprocess.Popen(
        [
            sys.executable, "-c",
            "import time\nfrom tests.hosts.lab import Lab\nlab = Lab()\nlab.host('orphan')\n"
            "print(lab.network.slot, lab.root, flush=True)\ntime.sleep(120)\n",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert crashed.stdout is not None
    slot_text, root = crashed.stdout.readline().split()
    crashed.kill()
    crashed.wait(10)
    slot = int(slot_text)
    assert f"sc{slot}-orphan" in _namespaces(), "the crashed run left its host behind"

    with Lab() as lab:
        assert slot in lab.network.leftovers_removed
        assert f"sc{slot}-orphan" not in _namespaces()
        host = lab.host("one")
        made = [lab.network.switch, host.ns]
        own_slot, own_root = lab.network.slot, lab.root
        assert all(ns in _namespaces() for ns in made)
    assert not any(ns in _namespaces() for ns in made)
    assert ip("link", "show", f"sc{own_slot}-op", check=False).returncode != 0
    assert not (CLAIMS / str(own_slot)).exists()
    assert not own_root.exists()
    Path(root).is_dir() and subprocess.run(["rm", "-rf", root], check=False)  # the crashed run's dir


def test_the_watcher_reports_a_file_opened_under_another_hosts_directory(lab: Lab) -> None:
    """Test that the trespass check can fail: a process of one host holding a file of another
    host (open, or mapped) is reported with its host, pid, path and the owner."""
    a, b = lab.host("a"), lab.host("b")
    secret = b.dir / "b-only.txt"
    secret.write_text("b's own file\n")
    own = a.dir / "a-own.txt"
    own.write_text("a's own file\n")
    holder = a.python(
        "holder",
        ["-c", f"import time\nmine = open({str(own)!r})\ntheirs = open({str(secret)!r})\ntime.sleep(60)\n"],
    )
    wait_until(lambda: lab.trespasses(), timeout=30, what="the watcher to see the trespass")
    (trespass,) = lab.trespasses()
    assert (trespass.host, trespass.owner, trespass.path, trespass.pid) == ("a", "b", str(secret), holder.pid)
    assert str(own) in lab.watcher.own_paths["a"]
    holder.kill()
