"""Operaton, the realtime engine: the project's own Spring Boot application in `engine/`.

Maven Central has no runnable Operaton distribution, so the fetch builds `engine/` (Operaton's
REST starter over PostgreSQL, see engine/README.md) with `mvn package` into one executable jar,
extracts it (Spring Boot's layout of a launcher jar and `lib/`) and caches that by the Operaton
version and a short hash of the application's sources:
`$PHEE_CACHE/operaton/<OPERATON>-<hash>/app/phee-engine.jar`. A change to `engine/` is a new
cache folder, so a stale jar is never started.

One engine is its own PostgreSQL (logical WAL, so Debezium can read it later), a database
`engine` for Operaton and a database `payments` for the workers' shared payment store, and one or
more engine nodes (JVMs) over the same database. A node is ready when `GET /engine-rest/engine`
answers. `start_engine` returns a `RunningEngine` the tests drive: REST URLs, database URLs, and
killing, stopping, restarting or adding a node (fault tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from harness.components import fetchers, progress
from harness.components.base import (
    Component,
    FetchError,
    Running,
    StartError,
    free_port,
    fresh_dir,
    http_status,
    pid_alive,
    stop_pid,
)
from harness.components.postgres import PostgreSQL
from harness.components.versions import OPERATON, SPRING_BOOT

#: the application's sources, at the repository's root
ENGINE_SOURCES = Path(__file__).resolve().parents[2] / "engine"
JAR_NAME = "phee-engine.jar"
#: JVM options of a node: the best measured run in REFERENCE 4.2
JVM_OPTIONS = (
    "-Xmx384m",
    "-XX:+UseSerialGC",
    # Operaton parses every timer's ISO duration with a new DatatypeFactory; without this the
    # JDK looks the factory up with a ServiceLoader each time, about 5% of the engine's CPU
    # under load (JFR)
    "-Djavax.xml.datatype.DatatypeFactory="
    "com.sun.org.apache.xerces.internal.jaxp.datatype.DatatypeFactoryImpl",
)
#: PostgreSQL settings Debezium needs (logical decoding through replication slots)
CDC_SETTINGS = {"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}
ENGINE_DB = "engine"
PAYMENTS_DB = "payments"
#: Hikari pool of each node (engine/README.md: 10 completed nothing under load)
DEFAULT_POOL_SIZE = 24


def sources_hash(root: Path = ENGINE_SOURCES) -> str:
    """Twelve hex digits of SHA-256 over the application's pom and sources (paths and bytes)."""
    digest = hashlib.sha256()
    files = [root / "pom.xml", *sorted(p for p in (root / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def java() -> str:
    """The JDK 17 that Maven builds with (the engine's jar targets Java 17)."""
    found = shutil.which("java")
    if found is None:
        raise StartError("no `java` on PATH: the engine needs a Java 17 runtime")
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Operaton(Component):
    """The engine jar (fetch) and engines of one PostgreSQL and N nodes (start)."""

    name = "operaton"
    version = OPERATON
    start_deadline_s = 180.0
    stop_grace_s = 25.0

    def __init__(self, sources: Path = ENGINE_SOURCES) -> None:
        self.sources = sources

    @property
    def cache_dir(self) -> Path:
        return super().cache_dir.with_name(f"{OPERATON}-{sources_hash(self.sources)}")

    @property
    def jar(self) -> Path:
        """The application's launcher jar in Spring Boot's extracted layout (`app/lib/*.jar`).

        Not the fat jar: Operaton's REST layer runs a `ServiceLoader` lookup on every request
        (`EngineUtil.lookupProcessEngine`), which over the fat jar's nested-jar class loader
        cost about 5% of the engine's CPU under load (JFR); over plain jars it is a hash
        lookup per jar.
        """
        return self.cache_dir / "app" / JAR_NAME

    def is_cached(self) -> bool:
        return super().is_cached() and self.jar.is_file()

    def _fetch(self) -> None:
        # Built in a copy, so that the work tree gets no `target/` and a failed build leaves
        # nothing half-written in the cache.
        with tempfile.TemporaryDirectory(prefix="phee-engine-build-") as tmp:
            project = Path(tmp) / "engine"
            shutil.copytree(self.sources, project, ignore=shutil.ignore_patterns("target"))
            built = fetchers.maven_package(project) / JAR_NAME
            if not built.is_file():
                raise FetchError(f"operaton: mvn package made no {built}")
            app = self.cache_dir / "app"
            shutil.rmtree(app, ignore_errors=True)
            extract = [java(), "-Djarmode=tools", "-jar", str(built), "extract"]
            done = subprocess.run(
                [*extract, "--destination", str(app)], capture_output=True, text=True, timeout=300
            )
            if done.returncode != 0:
                raise FetchError(f"operaton: extracting {built} failed: {done.stderr[-2000:]}")
        progress.reporter().line(
            f"  [{self.name}] Operaton {OPERATON} on Spring Boot {SPRING_BOOT}: {self.jar}"
        )

    def start(self, workdir: Path, **options: Any) -> Running:
        """Start an engine (PostgreSQL + nodes); options: `nodes` (1), `pool_size`."""
        engine = start_engine(workdir, self.name, component=self, **options)
        return engine.running()

    def stop(self, running: Running) -> None:
        for pid in running.extra.get("node_pids", []):
            stop_pid(int(pid), self.stop_grace_s)
        stop_pid(int(running.extra.get("postgres_pid", running.pid)), 20.0, signal.SIGINT)

    def stop_running_node(self, run: Running) -> None:
        """Stop one node (SIGTERM: Spring's graceful shutdown; SIGKILL after the grace)."""
        stop_pid(run.pid, self.stop_grace_s)

    def start_node(self, workdir: Path, *, jdbc_url: str, port: int, pool_size: int) -> Running:
        """One engine node (a JVM) on `port` over the database at `jdbc_url`; its log
        (`workdir/engine.log`) is appended to by a restart."""
        extra = shlex.split(os.environ.get("PHEE_ENGINE_JVM_OPTIONS", ""))
        cmd = [
            java(),
            *JVM_OPTIONS,
            *extra,
            "-jar",
            str(self.jar),
            f"--server.port={port}",
            "--server.address=127.0.0.1",
        ]
        env = {
            "SPRING_DATASOURCE_URL": jdbc_url,
            "SPRING_DATASOURCE_USERNAME": "postgres",
            "SPRING_DATASOURCE_PASSWORD": "",
            "PHEE_ENGINE_POOL_SIZE": str(pool_size),
        }
        rest = f"http://127.0.0.1:{port}/engine-rest"
        return self._launch_and_wait(
            cmd,
            workdir=workdir,
            ready=lambda: http_status(f"{rest}/engine") == 200,
            env=env,
            log_name="engine.log",
            endpoints={"rest": rest, "actuator": f"http://127.0.0.1:{port}/actuator"},
            ports={"http": port},
        )


@dataclass
class EngineNode:
    """One node: its port never changes, so a restarted node keeps its URL."""

    index: int
    port: int
    run: Running | None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/engine-rest"

    @property
    def alive(self) -> bool:
        return self.run is not None and pid_alive(self.run.pid)


@dataclass
class RunningEngine:
    """An engine: its PostgreSQL, its nodes and how to reach them."""

    name: str
    workdir: Path
    component: Operaton
    postgres: Running
    nodes: list[EngineNode]
    pool_size: int
    ready_s: list[float] = field(default_factory=list)

    @property
    def rest_urls(self) -> list[str]:
        """`http://127.0.0.1:P/engine-rest` of every node, in node order."""
        return [node.rest_url for node in self.nodes]

    @property
    def sql_port(self) -> int:
        return self.postgres.ports["sql"]

    def _url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.sql_port}/{database}"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the engine's database (Operaton's ACT_* tables)."""
        return self._url(ENGINE_DB)

    @property
    def payments_url(self) -> str:
        """SQLAlchemy URL of the workers' shared payment store, on the same server."""
        return self._url(PAYMENTS_DB)

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.sql_port}/{ENGINE_DB}"

    def rss_mb(self) -> list[float]:
        """Resident memory of every node's JVM, in MB (0 for a node that is down)."""
        return [rss_mb(n.run.pid) if n.run and n.alive else 0.0 for n in self.nodes]

    def kill_node(self, index: int) -> None:
        """SIGKILL one node (a crash: no shutdown hook, its locks stay until they expire)."""
        node = self.nodes[index]
        if node.run is not None:
            stop_pid(node.run.pid, grace_s=0.0, sig=signal.SIGKILL)

    def stop_node(self, index: int) -> None:
        """Stop one node cleanly (SIGTERM: Spring's graceful shutdown)."""
        node = self.nodes[index]
        if node.run is not None:
            self.component.stop_running_node(node.run)

    def restart_node(self, index: int) -> float:
        """Start a stopped or killed node again on its old port; seconds until ready."""
        node = self.nodes[index]
        if node.alive:
            raise StartError(f"{self.name} node {index} still runs; stop or kill it first")
        node.run = self._start_node(node.index, node.port)
        return node.run.ready_s

    def add_node(self) -> str:
        """One more node over the same database; its REST URL."""
        index = len(self.nodes)
        node = EngineNode(index, free_port(), None)
        node.run = self._start_node(index, node.port)
        self.nodes.append(node)
        return node.rest_url

    def remove_node(self, index: int) -> None:
        """Stop one node (if it runs) and drop it from `nodes` (and so from `rest_urls`)."""
        node = self.nodes.pop(index)
        if node.run is not None:
            self.component.stop_running_node(node.run)

    def _start_node(self, index: int, port: int) -> Running:
        run = self.component.start_node(
            self.workdir / f"node-{index}",
            jdbc_url=self.jdbc_url,
            port=port,
            pool_size=self.pool_size,
        )
        self.ready_s.append(run.ready_s)
        progress.reporter().line(
            f"{self.name} node {index}: ready in {run.ready_s:.1f} s at "
            f"http://127.0.0.1:{port}/engine-rest, RSS {rss_mb(run.pid):.0f} MB"
        )
        return run

    def stop(self) -> None:
        """Stop every node, then PostgreSQL."""
        for node in self.nodes:
            if node.run is not None:
                self.component.stop_running_node(node.run)
        stop_pid(self.postgres.pid, 20.0, signal.SIGINT)

    def running(self) -> Running:
        """The engine as one `Running` record (for the CLI's state file and `status`)."""
        first = self.nodes[0].run
        assert first is not None
        return Running(
            name=self.component.name,
            version=self.component.version,
            pid=first.pid,
            workdir=str(self.workdir),
            log_path=first.log_path,
            ready_s=sum(self.ready_s),
            endpoints={
                **{f"rest{n.index}": n.rest_url for n in self.nodes},
                "database": self.database_url,
                "payments": self.payments_url,
            },
            ports={"sql": self.sql_port, **{f"http{n.index}": n.port for n in self.nodes}},
            extra={
                "postgres_pid": self.postgres.pid,
                "node_pids": [n.run.pid for n in self.nodes if n.run is not None],
            },
        )


def create_databases(sql_port: int, names: tuple[str, ...]) -> None:
    """CREATE DATABASE each of `names` on a fresh server (as the trusted `postgres` user)."""
    conninfo = f"host=127.0.0.1 port={sql_port} user=postgres dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')  # names are ours, not input


def start_engine(
    workdir: Path,
    name: str = "operaton",
    nodes: int = 1,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    component: Operaton | None = None,
    pg_settings: dict[str, str] | None = None,
) -> RunningEngine:
    """Start an engine under `workdir/name`: PostgreSQL, databases, `nodes` nodes; all ready.

    `pg_settings` are extra PostgreSQL settings (for example `pg_stat_statements` while
    measuring). The jar is fetched (built) first if it is not cached. The first node creates
    the schema; the others start after it, so two nodes never race on a fresh database.
    Anything started is stopped again when a later step fails.
    """
    if nodes < 1:
        raise ValueError("an engine needs at least one node")
    comp = component or Operaton()
    comp.fetch()
    postgresql = PostgreSQL()
    postgresql.fetch()
    home = fresh_dir(workdir / name)
    pg = postgresql.start(home, settings={**CDC_SETTINGS, **(pg_settings or {})})
    ports = [free_port() for _ in range(nodes)]
    engine = RunningEngine(
        name, home, comp, pg, [EngineNode(i, p, None) for i, p in enumerate(ports)], pool_size
    )
    try:
        create_databases(pg.ports["sql"], (ENGINE_DB, PAYMENTS_DB))
        for node in engine.nodes:
            node.run = engine._start_node(node.index, node.port)
    except BaseException:
        engine.stop()
        raise
    return engine


@contextlib.contextmanager
def running_engine(
    workdir: Path, name: str = "operaton", nodes: int = 1
) -> Iterator[RunningEngine]:
    """`start_engine` as a context manager that always stops what it started."""
    engine = start_engine(workdir, name, nodes)
    try:
        yield engine
    finally:
        engine.stop()
