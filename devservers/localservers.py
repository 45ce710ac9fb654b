"""Start a real Mosquitto broker or InfluxDB 1.x server on a free loopback port.

Used by the integration-test fixtures and by ``plantwatch demo`` when a local
``mosquitto`` binary is found. Each server gets its own config file, data and
log files in a work directory the caller owns, listens on 127.0.0.1 only, and
is stopped by pid (SIGTERM, then SIGKILL after a timeout)::

    with Mosquitto.start(tmp / "broker") as broker:
        client.connect(broker.host, broker.port)

Start-up waits until the server answers (a TCP accept for Mosquitto, ``GET
/ping`` → 204 for InfluxDB) and fails with :class:`ServerStartError` carrying
the tail of the server's log. A port picked by :func:`free_port` can be taken
by someone else before the server binds it; a server that dies at start-up on
a port we picked is retried on fresh ports.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "InfluxD",
    "Mosquitto",
    "ServerStartError",
    "find_influxd",
    "find_mosquitto",
    "free_port",
]

LOOPBACK = "127.0.0.1"
_START_ATTEMPTS = 3
_POLL_S = 0.02


class ServerStartError(RuntimeError):
    """A local server did not come up; ``log_tail`` is the end of its log."""

    def __init__(self, name: str, reason: str, log_path: Path | None) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = _tail(log_path) if log_path is not None else ""
        where = f"\n--- last lines of {log_path} ---\n{self.log_tail}" if log_path else ""
        super().__init__(f"{name} did not start: {reason}{where}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _search_path() -> str:
    # Debian installs both servers under /usr/sbin, which a non-root PATH lacks.
    extra = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]
    return os.pathsep.join([os.environ.get("PATH", ""), *extra])


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` broker binary (PATH, then /usr/sbin), or None."""
    return shutil.which("mosquitto", path=_search_path())


def find_influxd() -> str | None:
    """Path of the InfluxDB 1.x ``influxd`` binary (PATH, then /usr/sbin), or None."""
    return shutil.which("influxd", path=_search_path())


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(os.getuid())


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def _influx_ping(port: int) -> bool:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=0.5)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 204
    except OSError:
        return False
    finally:
        conn.close()


class _LocalServer:
    """A server subprocess we own: started, polled until ready, stopped by pid."""

    name = "server"

    def __init__(
        self, proc: subprocess.Popen[bytes], log: IO[bytes], log_path: Path, port: int
    ) -> None:
        self._proc = proc
        self._log = log
        self.log_path = log_path
        self.host = LOOPBACK
        self.port = port
        self.pid = proc.pid

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self._proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the server, SIGKILL it if it has not exited after ``timeout_s``; reap it."""
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests) and reap it."""
        self._signal(signal.SIGKILL)
        self._proc.wait()
        self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self._proc.returncode}"
        return f"<{type(self).__name__} pid={self.pid} port={self.port} {state}>"


def _logged_since(log_path: Path, offset: int) -> bytes:
    with log_path.open("rb") as f:
        f.seek(offset)
        return f.read()


def _launch(
    name: str,
    argv: list[str],
    log_path: Path,
    marker: bytes,
    ready: Callable[[], bool],
    timeout_s: float,
) -> tuple[subprocess.Popen[bytes], IO[bytes]] | None:
    """Start ``argv`` logging to ``log_path``; wait for ``marker`` in the log, then ``ready()``.

    The log marker proves that *our* process got its listeners (the port
    alone could be answered by whoever else holds it). Returns None if the
    process exited during start-up (the caller may retry on other ports);
    raises :class:`ServerStartError` on a timeout.
    """
    log = log_path.open("ab")
    offset = log.tell()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches us, and we stop it.
            start_new_session=True,
        )
    except OSError as exc:
        log.close()
        raise ServerStartError(name, f"cannot run {argv[0]}: {exc.strerror}", None) from exc
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            log.close()
            return None
        if marker in _logged_since(log_path, offset) and ready():
            return proc, log
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.close()
            raise ServerStartError(name, f"not ready after {timeout_s:g} s", log_path)
        time.sleep(_POLL_S)


def _check_dir(workdir: Path) -> Path:
    workdir = workdir.resolve()
    # Both config formats here are line based; a path with whitespace would be cut.
    if any(ch.isspace() for ch in str(workdir)):
        raise ValueError(f"work directory {str(workdir)!r} must not contain whitespace")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


class Mosquitto(_LocalServer):
    """A Mosquitto 2.x broker on 127.0.0.1, configured never to drop a queued reading.

    Attributes: ``host``, ``port``, ``pid``, ``url`` (``mqtt://127.0.0.1:PORT``),
    ``config_path``, ``log_path``.
    """

    name = "mosquitto"

    # Mosquitto's defaults drop messages under load: max_queued_messages 1000
    # per client ("Outgoing messages are being dropped for client ..."). Its
    # "0 = no maximum" is not safe across 2.0.x: 2.0.16 dropped *everything*
    # with it (eclipse-mosquitto/mosquitto#2879) and up to 2.0.21 it answers
    # publishers "quota exceeded" (#3244). A large finite cap behaves the same
    # on every 2.0.x; at 500 B a reading message it is ~5 GB of backlog.
    MAX_QUEUED_MESSAGES = 10_000_000
    # plantwatch acknowledges a QoS 1 message only once its readings are
    # durable, so many messages are unacknowledged at any moment. 65535 is the
    # most MQTT allows (Receive Maximum is 16 bits) and what mosquitto accepts.
    MAX_INFLIGHT_MESSAGES = 65_535

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        log: IO[bytes],
        log_path: Path,
        port: int,
        config_path: Path,
    ) -> None:
        super().__init__(proc, log, log_path, port)
        self.config_path = config_path
        self.url = f"mqtt://{self.host}:{self.port}"

    @staticmethod
    def config_text(workdir: Path, port: int, persistence: bool = True) -> str:
        """The mosquitto.conf this class writes (public so the demo can show it)."""
        lines = [
            "# Written by devservers.localservers; see mosquitto.conf(5).",
            # Run as root, mosquitto drops to user 'mosquitto', which cannot
            # write our work directory; name ourselves instead.
            f"user {_user_name()}",
            "per_listener_settings false",
            "allow_anonymous true",
            f"listener {port} {LOOPBACK}",
            "set_tcp_nodelay true",
            f"max_queued_messages {Mosquitto.MAX_QUEUED_MESSAGES}",
            "max_queued_bytes 0",
            f"max_inflight_messages {Mosquitto.MAX_INFLIGHT_MESSAGES}",
            "max_inflight_bytes 0",
            "memory_limit 0",
            # A persistent session (plantwatch's subscriber) keeps its queue
            # through an outage of two weeks before the broker forgets it.
            "persistent_client_expiration 14d",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {workdir}/",
                "persistence_file mosquitto.db",
                # The in-memory store is written every 10 s and at shutdown;
                # a SIGKILLed broker loses at most the last 10 s of queue.
                "autosave_interval 10",
            ]
        else:
            lines.append("persistence false")
        return "\n".join(lines) + "\n"

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        persistence: bool = True,
        *,
        binary: str | None = None,
        timeout_s: float = 10.0,
    ) -> Mosquitto:
        """Write ``workdir/mosquitto.conf``, start the broker, wait until it accepts.

        ``port=None`` picks a free port (retried if another process takes it
        first). The log is ``workdir/mosquitto.log``; persistence, if on, is
        ``workdir/mosquitto.db``, so starting again on the same ``workdir`` and
        port restores persistent sessions and their queues.
        """
        exe = binary or find_mosquitto()
        if exe is None:
            raise ServerStartError(
                cls.name, "no mosquitto binary (apt-get install mosquitto)", None
            )
        workdir = _check_dir(workdir)
        config_path = workdir / "mosquitto.conf"
        log_path = workdir / "mosquitto.log"
        for _ in range(_START_ATTEMPTS if port is None else 1):
            use_port = port if port is not None else free_port()
            config_path.write_text(cls.config_text(workdir, use_port, persistence))
            started = _launch(
                cls.name,
                [exe, "-c", str(config_path)],
                log_path,
                b" running",  # "mosquitto version 2.0.11 running", once listening
                functools.partial(_port_open, use_port),
                timeout_s,
            )
            if started is not None:
                return cls(*started, log_path, use_port, config_path)
        raise ServerStartError(cls.name, "the broker exited during start-up", log_path)


class InfluxD(_LocalServer):
    """An InfluxDB 1.x ``influxd`` on 127.0.0.1 with all its files in a work directory.

    Attributes: ``host``, ``port`` (HTTP), ``pid``, ``url``
    (``http://127.0.0.1:PORT``), ``config_path``, ``log_path``.
    """

    name = "influxd"

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        log: IO[bytes],
        log_path: Path,
        port: int,
        config_path: Path,
    ) -> None:
        super().__init__(proc, log, log_path, port)
        self.config_path = config_path
        self.url = f"http://{self.host}:{self.port}"

    @staticmethod
    def config_text(workdir: Path, port: int, rpc_port: int) -> str:
        """The influxdb.conf this class writes: HTTP only, no telemetry, no self-monitoring."""
        return f"""\
# Written by devservers.localservers.
reporting-disabled = true
bind-address = "{LOOPBACK}:{rpc_port}"

[meta]
  dir = "{workdir}/meta"
  logging-enabled = false

[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = "{LOOPBACK}:{port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[logging]
  # info: start-up and shutdown lines (start() waits for one); with the HTTP
  # access log and the query log off, nothing per request.
  level = "info"
  suppress-logo = true
"""

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        *,
        binary: str | None = None,
        timeout_s: float = 15.0,
    ) -> InfluxD:
        """Write ``workdir/influxdb.conf``, start influxd, wait until ``/ping`` answers 204.

        Data, WAL and meta directories live under ``workdir``; the log is
        ``workdir/influxd.log``.
        """
        exe = binary or find_influxd()
        if exe is None:
            raise ServerStartError(cls.name, "no influxd binary (apt-get install influxdb)", None)
        workdir = _check_dir(workdir)
        config_path = workdir / "influxdb.conf"
        log_path = workdir / "influxd.log"
        for _ in range(_START_ATTEMPTS if port is None else 1):
            use_port = port if port is not None else free_port()
            config_path.write_text(cls.config_text(workdir, use_port, free_port()))
            started = _launch(
                cls.name,
                [exe, "-config", str(config_path)],
                log_path,
                b'msg="Listening for signals"',  # once every service is open
                functools.partial(_influx_ping, use_port),
                timeout_s,
            )
            if started is not None:
                return cls(*started, log_path, use_port, config_path)
        raise ServerStartError(cls.name, "influxd exited during start-up", log_path)
