"""The licence policy: spellings, expressions, refused licences and groups, and the readers'
small parsers (POM, Debian copyright, npm manifest, go buildinfo, package lists)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from harness.licences import checks, debian, gobin, maven, npm
from harness.licences.model import Item, Kind
from harness.licences.policy import Status, judge, refused_coordinate
from harness.licences.texts import classify_text

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ACCEPTED = [
    ("Apache License, Version 2.0", "Apache-2.0"),
    ("The Apache Software License, Version 2.0", "Apache-2.0"),
    ("http://www.apache.org/licenses/LICENSE-2.0.txt", "Apache-2.0"),
    ("Apache 2", "Apache-2.0"),
    ("MIT License", "MIT"),
    ("The MIT License (MIT)", "MIT"),
    ("Expat", "MIT"),
    ("BSD-3-Clause", "BSD-3-Clause"),
    ("3-Clause BSD License", "BSD-3-Clause"),
    ("New BSD License", "BSD-3-Clause"),
    ("BSD 2-Clause License", "BSD-2-Clause"),
    ("EPL-2.0", "EPL-2.0"),
    ("Eclipse Public License - v 1.0", "EPL-1.0"),
    ("Eclipse Public License v2.0", "EPL-2.0"),
    ("Eclipse Distribution License - v 1.0", "EDL-1.0"),
    ("GPL-2.0 with Classpath exception", "GPL-2.0-with-classpath-exception"),
    (
        "GNU General Public License, version 2 with the GNU Classpath Exception",
        "GPL-2.0-with-classpath-exception",
    ),
    ("GNU General Public License v2 (GPLv2)", "GPL"),
    ("GPL-2+", "GPL"),
    ("LGPL", "LGPL"),
    ("GNU Lesser General Public License", "LGPL"),
    ("LGPL-3.0-only", "LGPL"),
    ("MPL-2.0", "MPL-2.0"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    ("CDDL", "CDDL"),
    ("Common Development and Distribution License", "CDDL"),
    ("COMMON DEVELOPMENT AND DISTRIBUTION LICENSE (CDDL) Version 1.0", "CDDL"),
    (
        "Apache-2.0 AND GPL-2.0-only WITH Classpath-exception-2.0",
        ("Apache-2.0 AND GPL-2.0-with-classpath-exception"),
    ),
    ("CDDL + GPLv2 with classpath exception", "CDDL OR GPL-2.0-with-classpath-exception"),
    ("Public Domain", "Public-Domain"),
    ("public-domain", "Public-Domain"),
    ("ISC", "ISC"),
    ("Unicode-DFS-2016", "Unicode"),
    ("PSF-2.0", "PSF-2.0"),
    ("Python Software Foundation License", "PSF-2.0"),
    ("0BSD", "0BSD"),
    ("BlueOak-1.0.0", "BlueOak-1.0.0"),
    ("PostgreSQL", "PostgreSQL"),
    ("zlib/libpng", "Zlib"),
    ("Boost Software License 1.0", "BSL-1.0"),
    ("Apache-2.0 AND CNRI-Python", "Apache-2.0 AND CNRI-Python"),
]

DUAL = [
    ("MIT OR Apache-2.0", "MIT OR Apache-2.0"),
    ("(MIT OR Apache-2.0)", "MIT OR Apache-2.0"),
    ("AGPL-3.0 OR MIT", "MIT"),
    ("GPL2 w/ CPE", "GPL-2.0-with-classpath-exception"),
    ("EPL 2.0 OR GPL2 w/ CPE", "EPL-2.0 OR GPL-2.0-with-classpath-exception"),
    ("MPL-2.0 AND (Apache-2.0 OR MIT)", "MPL-2.0 AND (Apache-2.0 OR MIT)"),
    ("GPL-2 or Artistic", "GPL OR Artistic"),
    ("Dual license: SSPL-1.0 or Apache-2.0", "Apache-2.0"),
]

REFUSED = [
    ("AGPL-3.0", "AGPL-3.0"),
    ("GNU Affero General Public License v3", "AGPL-3.0"),
    ("SSPL-1.0", "SSPL-1.0"),
    ("Server Side Public License, v 1", "SSPL-1.0"),
    ("BUSL-1.1", "BUSL-1.1"),
    ("Business Source License 1.1", "BUSL-1.1"),
    ("Elastic-2.0", "Elastic-2.0"),
    ("Elastic License 2.0", "Elastic-2.0"),
    ("SSPL-1.0 OR Elastic-2.0", "SSPL-1.0 OR Elastic-2.0"),
    ("Apache-2.0 with Commons Clause", "Commons-Clause"),
    ("Zeebe Community License Version 1.1", "Zeebe-Community"),
    ("Camunda License 1.0", "Camunda-License"),
    ("Proprietary", "Proprietary"),
    ("Apache-2.0 AND AGPL-3.0", "Apache-2.0 AND AGPL-3.0"),
]

UNKNOWN = ["", "LICENSE", "Custom-pg_dump", "JSON License", "SEE LICENSE IN LICENSE.md"]


@pytest.mark.parametrize(("found", "canonical"), ACCEPTED + DUAL)
def test_accepted_spellings(found: str, canonical: str) -> None:
    verdict = judge(found)
    assert verdict.status is Status.ACCEPTED, verdict
    assert verdict.canonical == canonical


@pytest.mark.parametrize(("found", "canonical"), REFUSED)
def test_refused_licences(found: str, canonical: str) -> None:
    verdict = judge(found)
    assert verdict.status is Status.REFUSED, verdict
    assert verdict.canonical == canonical
    assert verdict.reason.startswith("refused licence")


@pytest.mark.parametrize("found", UNKNOWN)
def test_unknown_licences_fail(found: str) -> None:
    verdict = judge(found)
    assert verdict.status is Status.UNKNOWN
    assert not verdict.ok


@pytest.mark.parametrize(
    ("group", "refused"),
    [
        ("io.camunda", True),
        ("io.camunda.connector", True),
        ("org.elasticsearch", True),
        ("org.elasticsearch.plugin", True),
        ("co.elastic.clients", True),
        ("org.operaton.bpm", False),
        ("org.opensearch", False),
        ("io.camundafake", False),
        ("io.zeebe", False),
    ],
)
def test_refused_groups(group: str, refused: bool) -> None:
    assert (refused_coordinate(group) is not None) is refused


def test_a_camunda_coordinate_fails_whatever_its_pom_says() -> None:
    item = Item(Kind.MAVEN, "io.camunda:zeebe-broker", "8.5.8", "zeebe/x.jar", "Apache-2.0", "pom")
    verdict, excepted = checks.verdict(item, [], {})
    assert verdict.status is Status.REFUSED
    assert "io.camunda" in verdict.reason
    assert not excepted


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("          Apache License\n  Version 2.0, January 2004", "Apache-2.0"),
        ("Copyright (c) 2020 X\n\nPermission is hereby granted, free of charge, to any", "MIT"),
        (
            "Redistribution and use in source and binary forms ... Neither the name of",
            "BSD-3-Clause",
        ),
        ("Redistribution and use in source and binary forms, with or without", "BSD-2-Clause"),
        ("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3", "AGPL-3.0"),
        ("Server Side Public License\nVERSION 1, OCTOBER 16, 2018", "SSPL-1.0"),
        (
            "GNU GENERAL PUBLIC LICENSE Version 2 ... CLASSPATH EXCEPTION",
            ("GPL-2.0-with-classpath-exception"),
        ),
        ("nothing that names a licence", None),
    ],
)
def test_licence_texts(text: str, name: str | None) -> None:
    assert classify_text(text) == name


def test_exception_decides_only_an_unknown_licence(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(
        '[[exception]]\nkind = "npm"\nname = "pause"\nversion = "0.0.1"\n'
        'licence = "MIT"\nwhere = "Readme.md"\n'
    )
    entries = checks.load_exceptions(path)
    unknown = Item(Kind.NPM, "pause", "0.0.1", "ttk/node_modules/pause", "", "package.json")
    verdict, excepted = checks.verdict(unknown, entries, {})
    assert verdict.ok
    assert excepted
    assert "Readme.md" in verdict.reason
    newer = Item(Kind.NPM, "pause", "0.0.2", "ttk/node_modules/pause", "", "package.json")
    assert not checks.verdict(newer, entries, {})[0].ok
    agpl = Item(Kind.NPM, "pause", "0.0.1", "x", "AGPL-3.0", "package.json")
    assert checks.verdict(agpl, entries, {})[0].status is Status.REFUSED


def test_an_exception_cannot_name_a_refused_licence(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(
        '[[exception]]\nkind = "maven"\nname = "a:b"\nversion = "1"\n'
        'licence = "SSPL-1.0"\nwhere = "x"\n'
    )
    with pytest.raises(ValueError, match="SSPL"):
        checks.load_exceptions(path)


def test_not_to_use_rows(tmp_path: Path) -> None:
    (tmp_path / "maven-partial.tsv").write_text(
        "group:artifact\tversion\tversions\n"
        "io.camunda:camunda-zeebe\tnot-to-use\tnone: the vendor's own terms\n"
        "org.apache.kafka:kafka-clients\t3.9.1\t3.9.1\n"
    )
    (tmp_path / "pypi.tsv").write_text("name\tversion\nBad_Pkg\tnot-to-use\tnone: no licence\n")
    listed = checks.load_not_to_use(tmp_path)
    assert set(listed) == {"maven:io.camunda:camunda-zeebe", "python:bad-pkg", "wheel:bad-pkg"}
    item = Item(Kind.PYTHON, "bad.pkg", "1", "venv", "MIT", "License")
    verdict, _ = checks.verdict(item, [], listed)
    assert verdict.status is Status.REFUSED
    assert "no licence" in verdict.reason


def test_pom_licences_and_parent(tmp_path: Path) -> None:
    repo = maven.MavenRepo(tmp_path)
    parent = maven.Gav("org.example", "parent", "7")
    child = maven.Gav("org.example", "child", "1.0")
    _pom(
        repo,
        parent,
        "<licenses><license><name>The Apache Software License, Version 2.0"
        "</name></license></licenses>",
    )
    _pom(
        repo,
        child,
        "<parent><groupId>org.example</groupId><artifactId>parent</artifactId>"
        "<version>7</version></parent>",
    )
    licences, origin = repo.licences(child) or ((), "")
    assert licences == ("The Apache Software License, Version 2.0",)
    assert origin == "parent pom org.example:parent:7"


def test_jar_coordinates_from_its_pom_properties_and_fallbacks(tmp_path: Path) -> None:
    jar = tmp_path / "cache" / "comp" / "1" / "lib" / "thing-2.0.jar"
    jar.parent.mkdir(parents=True)
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr(
            "META-INF/maven/org.x/thing/pom.properties",
            "groupId=org.x\nartifactId=thing\nversion=2.0\n",
        )
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nBundle-License: MIT\n")
        zf.writestr(
            "META-INF/maven/io.camunda/inner/pom.properties",
            "groupId=io.camunda\nartifactId=inner\nversion=8\n",
        )
    items = maven.scan(tmp_path / "cache", maven.MavenRepo(tmp_path / "m2"), "Apache-2.0")
    by_name = {i.name: i for i in items}
    assert by_name["org.x:thing"].licence == "MIT"
    assert by_name["org.x:thing"].origin == "MANIFEST.MF Bundle-License"
    assert by_name["io.camunda:inner"].source.endswith("(carried inside)")
    assert checks.verdict(by_name["io.camunda:inner"], [], {})[0].status is Status.REFUSED


def test_debian_copyright_main_licence_and_others() -> None:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Source: x\n\nFiles:\n *\nCopyright: someone\nLicense: MIT\n\n"
        "Files: src/a.c\nCopyright: other\nLicense: LGPL-2.1+ or MIT\n\n"
        "Files: src/b.c\nLicense: AGPL-3+\n\nLicense: MIT\n text\n"
    )
    main, others = debian.parse_copyright(text)
    assert main == "MIT"
    assert others == ("LGPL-2.1+ or MIT", "AGPL-3+")
    item = Item(Kind.DEBIAN, "x", "1", "c", main, "copyright", others)
    assert checks.verdict(item, [], {})[0].status is Status.REFUSED


@pytest.mark.parametrize(
    ("manifest", "licence"),
    [
        ({"license": "MIT"}, "MIT"),
        ({"license": {"type": "BSD-3-Clause"}}, "BSD-3-Clause"),
        ({"licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}]}, "MIT OR Apache-2.0"),
        ({}, ""),
    ],
)
def test_npm_manifest_licence(manifest: dict[str, object], licence: str) -> None:
    assert npm.licence_of(json.loads(json.dumps(manifest))) == licence


def test_go_buildinfo_and_module_paths() -> None:
    text = (
        "kube-apiserver: go1.26.8\n\tpath\tk8s.io/kubernetes/cmd/kube-apiserver\n"
        "\tmod\tk8s.io/kubernetes\tv1.33.13\t\n\tdep\tgithub.com/x/y\tv1.0.0\th1:abc\n"
    )
    assert gobin.parse_buildinfo(text) == ("k8s.io/kubernetes", "v1.33.13", ("github.com/x/y",))
    assert gobin.escape_module("github.com/Azure/go-x") == "github.com/!azure/go-x"
    assert gobin.parse_buildinfo("not a go binary") is None


def _pom(repo: maven.MavenRepo, gav: maven.Gav, body: str) -> None:
    path = repo.pom_path(gav)
    path.parent.mkdir(parents=True)
    path.write_text(f'<project xmlns="http://maven.apache.org/POM/4.0.0">{body}</project>')
