"""Every tier on its own host: hosts made of network namespaces, for multi-host and fault tests.

Usage (the ``lab`` fixture is loaded for every test by tests/conftest.py)::

    from tests.hosts.services import HostInfluxD, HostMosquitto, start_gateway, start_pis

    @pytest.mark.netns
    def test_something(lab: Lab) -> None:
        broker = HostMosquitto(lab.host("broker")).start()
        store = HostInfluxD(lab.host("store")).start()    # auth on, the stack's accounts
        start_gateway(lab.host("gw"), broker=broker, sink_url=store.sink_url, client_id="gw-1")
        pis = start_pis(lab.host("pis"), broker, {"org": "city", "devices": [...], ...})
        with lab.link_cut("store"):        # pull the store's cable for the block
            ...
        lab.partition("pis", "broker")    # drop only the traffic between two hosts; lab.heal(...)
        assert lab.trespasses() == []     # no process opened a file of another host

What a lab is:

- :class:`~tests.hosts.lab.Lab`: hosts on a private 10.213.N.0/24 (N claimed per run, so parallel
  runs never collide) behind a switch namespace; the test process itself is ``10.213.N.1``
  (:attr:`Lab.operator_address`). ``lab.host(name)`` makes a host: a namespace, an address
  (``.address``), a directory (``.dir``, under ``lab.root/hosts/<name>/``).
- :class:`~tests.hosts.host.Host`: ``spawn(name, argv, env, user=)`` / ``python(name, args, env)``
  run a program inside the host (cwd, HOME and TMPDIR in its directory, log ``<dir>/<name>.log``);
  the :class:`~tests.hosts.host.HostProcess` it returns has ``pid``, ``kill()`` (-9 by default),
  ``stop()``, ``restart()``, ``log_tail()``.
- Faults (:class:`~tests.hosts.network.Network`): ``cut``/``restore``/``link_cut`` (the host's
  cable: both ways, silently, like a pulled cable), ``partition``/``heal``/``partitioned`` (only
  between two hosts: each sends the other's packets to a MAC address nobody has).
- :class:`~tests.hosts.watch.FileWatcher` samples ``/proc/PID/fd``, ``/proc/PID/maps`` and the
  cwd of every process in each host's namespace, all the test long; ``lab.trespasses()`` lists
  the files a host's process held under another host's directory.
- Launchers in :mod:`tests.hosts.services`, configured by ``suitcase/services/`` as production is:
  Mosquitto (optionally dynamic security with the stack's roles and a TLS-only listener), influxd
  (authentication, the stack's users), PostgreSQL (scram passwords from the /24 only),
  ``suitcase gateway run``, ``suitcase server run`` (:class:`HostServer`), and the simulated Pis
  (:mod:`tests.hosts.pis`). tests/e2e/test_multi_host.py shows a whole production stack.
- Teardown (also after a failure): every process stopped, then whatever is left in the namespaces
  killed, the namespaces and links deleted (waiting until the kernel has), the directory removed
  (kept with ``SUITCASE_KEEP_HOSTS=1``). A crashed run's leftovers (slot owner dead) are removed
  by the next run's setup.
"""

from tests.hosts.host import Host, HostProcess
from tests.hosts.lab import Lab
from tests.hosts.network import Network, NetworkError
from tests.hosts.watch import FileWatcher, Trespass

__all__ = ["FileWatcher", "Host", "HostProcess", "Lab", "Network", "NetworkError", "Trespass"]
