"""The private APT tree: built from the machine's sources, only the suite changed."""

import shutil
import textwrap
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab.apt import (
    AptSource,
    AptTree,
    host_codename,
    parse_deb822_sources,
    parse_one_line_sources,
    read_system_sources,
    sources_for_suite,
)

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# The deb822 file of a bookworm machine, and a disabled third-party file.
DEBIAN_SOURCES = textwrap.dedent(
    f"""\
    Types: deb
    # a comment
    URIs: http://mirror.example/debian
    Suites: bookworm bookworm-updates
    Components: main
    Signed-By: {KEYRING}

    Types: deb
    URIs: http://mirror.example/debian-security
    Suites: bookworm-security
    Components: main contrib
    Signed-By: {KEYRING}

    Types: deb-src
    URIs: http://mirror.example/debian
    Suites: bookworm
    Components: main
    """
)


def test_deb822_stanzas_expand_to_one_entry_per_suite():
    got = parse_deb822_sources(DEBIAN_SOURCES)
    assert got == [
        AptSource("http://mirror.example/debian", "bookworm", ("main",), KEYRING),
        AptSource("http://mirror.example/debian", "bookworm-updates", ("main",), KEYRING),
        AptSource("http://mirror.example/debian-security", "bookworm-security",
                  ("main", "contrib"), KEYRING),
    ]


def test_one_line_format_with_options_and_comments():
    text = textwrap.dedent(
        """\
        # deb http://old.example/debian buster main
        deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bullseye main non-free
        deb-src http://m.example/debian bullseye main
        deb http://m.example/debian-security bullseye-security main # trailing
        """
    )
    assert parse_one_line_sources(text) == [
        AptSource("http://m.example/debian", "bullseye", ("main", "non-free"), "/k.gpg"),
        AptSource("http://m.example/debian-security", "bullseye-security", ("main",), None),
    ]


def test_disabled_deb822_stanza_is_ignored():
    assert parse_deb822_sources(DEBIAN_SOURCES.replace("Types: deb\n# a", "Enabled: no\nTypes: deb\n# a")) == [
        AptSource("http://mirror.example/debian-security", "bookworm-security",
                  ("main", "contrib"), KEYRING),
    ]


def _etc_apt(tmp_path: Path) -> Path:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(DEBIAN_SOURCES)
    (etc / "sources.list.d" / "vendor.list").write_text(
        "deb https://vendor.example/apt cloud-sdk-bookworm main\n")
    (etc / "sources.list.d" / "other.list.disabled").write_text(
        "deb http://x.example/debian bookworm main\n")
    return etc


def test_system_sources_read_from_a_given_root(tmp_path):
    got = read_system_sources(_etc_apt(tmp_path))
    assert [s.suite for s in got] == [
        "bookworm", "bookworm-updates", "bookworm-security", "cloud-sdk-bookworm"]


def test_rewrite_changes_only_the_suite_and_drops_third_parties(tmp_path):
    system = read_system_sources(_etc_apt(tmp_path))
    got = sources_for_suite(system, "bookworm", "trixie")
    assert got == [
        AptSource("http://mirror.example/debian", "trixie", ("main",), KEYRING),
        AptSource("http://mirror.example/debian", "trixie-updates", ("main",), KEYRING),
        AptSource("http://mirror.example/debian-security", "trixie-security",
                  ("main", "contrib"), KEYRING),
    ]


def test_sid_has_no_pockets(tmp_path):
    system = read_system_sources(_etc_apt(tmp_path))
    got = sources_for_suite(system, "bookworm", "sid", pockets=False)
    assert got == [AptSource("http://mirror.example/debian", "sid", ("main",), KEYRING)]


def test_no_debian_entry_is_a_clear_error():
    with pytest.raises(BuddyscopeError, match="no Debian archive entry"):
        sources_for_suite([AptSource("http://x", "focal", ("main",))], "bookworm", "sid")


def test_tree_writes_its_own_sources_list_and_nothing_else(tmp_path):
    system = read_system_sources(_etc_apt(tmp_path))
    tree = AptTree(tmp_path / "tree", sources_for_suite(system, "bookworm", "bullseye"))
    assert (tmp_path / "tree" / "sources.list").read_text() == (
        f"deb [signed-by={KEYRING}] http://mirror.example/debian bullseye main\n"
        f"deb [signed-by={KEYRING}] http://mirror.example/debian bullseye-updates main\n"
        f"deb [signed-by={KEYRING}] http://mirror.example/debian-security bullseye-security main contrib\n"
    )
    # The options point every APT directory into the tree, and status at /dev/null.
    opts = tree._options()
    assert "Dir::State::status=/dev/null" in opts
    assert f"Dir::State::Lists={tmp_path / 'tree' / 'lists'}" in opts
    assert f"Dir::Etc::SourceParts={tmp_path / 'tree' / 'empty'}" in opts


def test_host_codename(tmp_path):
    f = tmp_path / "os-release"
    f.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert host_codename(f) == "bookworm"
    f.write_text("ID=debian\n")
    with pytest.raises(BuddyscopeError, match="cannot tell"):
        host_codename(f)


@pytest.mark.skipif(not shutil.which("apt-get"), reason="needs Debian's apt-get")
def test_unreachable_archive_is_one_clear_error(tmp_path):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    tree = AptTree(tmp_path, [AptSource("http://127.0.0.1:9/debian", "bookworm", ("main",))],
                   retries=0)
    with pytest.raises(BuddyscopeError, match="cannot be reached|failed"):
        tree.update()
