"""The generator of docs/configuration.md: everything in the page that can come from the option
table does, and its command line rewrites or checks the file."""

from __future__ import annotations

from kong_oidc_py import config_docs
from kong_oidc_py.config import OPTIONS, options_markdown


def test_page_contains_the_generated_tables_between_markers():
    page = config_docs.configuration_markdown()
    block = page.split("<!-- options:start -->", 1)[1].split("<!-- options:end -->", 1)[0]
    assert block.strip("\n") == options_markdown().strip("\n")


def test_every_secret_option_is_listed_as_encrypted_and_referenceable():
    page = " ".join(config_docs.configuration_markdown().split())  # the list wraps anywhere
    secrets = page.split("* **Secrets.**", 1)[1].split("in the schema.", 1)[0]
    for opt in OPTIONS:
        assert (f"`{opt.name}`" in secrets) == opt.secret, opt.name


def test_options_without_a_kong_enterprise_name_are_listed_as_ours_only():
    page = config_docs.configuration_markdown()
    ours = page.split("These options exist only here:", 1)[1]
    for opt in OPTIONS:
        assert (f"`{opt.name}`" in ours) == (opt.ko is None), opt.name


def test_main_writes_the_page(tmp_path):
    target = tmp_path / "configuration.md"
    assert config_docs.main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == config_docs.configuration_markdown()


def test_check_passes_on_a_fresh_page(tmp_path):
    target = tmp_path / "configuration.md"
    target.write_text(config_docs.configuration_markdown(), encoding="utf-8")
    assert config_docs.main(["--check", str(target)]) == 0


def test_check_fails_on_a_stale_page_and_names_the_command(tmp_path, capsys):
    target = tmp_path / "configuration.md"
    target.write_text(config_docs.configuration_markdown().replace("`issuer`", "`issuer_url`"), encoding="utf-8")
    assert config_docs.main(["--check", str(target)]) == 1
    assert "make docs" in capsys.readouterr().err
    assert "issuer_url" in target.read_text(encoding="utf-8"), "--check must not rewrite the file"


def test_check_fails_when_the_page_is_missing(tmp_path):
    assert config_docs.main(["--check", str(tmp_path / "configuration.md")]) == 1


def test_unknown_flag_is_a_usage_error(tmp_path, capsys):
    assert config_docs.main(["--markdown"]) == 2
    assert "usage" in capsys.readouterr().err
