"""Publishing: the GitHub workflows, the book configuration and the Colab install cell agree with each other."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name):
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(data):
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def uses(data, action):
    return [s for s in steps(data) if s.get("uses", "").split("@")[0] == action]


def test_book_workflow_builds_on_main_caches_runs_and_deploys_to_pages():
    book = workflow("book.yml")
    assert book["on"]["push"]["branches"] == ["main"]
    assert {"pages": "write", "id-token": "write"}.items() <= book["permissions"].items()
    assert any(s.get("run") == "make book" for s in steps(book))
    restore, save = uses(book, "actions/cache/restore"), uses(book, "actions/cache/save")
    assert restore[0]["with"]["path"] == save[0]["with"]["path"] == ".cache/runs"
    assert save[0]["if"] == "always()"  # runs finished before a failure are kept too
    failed = [s for s in uses(book, "actions/upload-artifact") if s.get("if") == "failure()"]
    assert failed and failed[0]["with"]["path"].startswith("_build/executed")
    assert uses(book, "actions/configure-pages")
    assert uses(book, "actions/upload-pages-artifact")[0]["with"]["path"] == "_build/html"
    deploy = book["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert uses({"jobs": {"deploy": deploy}}, "actions/deploy-pages")


def test_tests_workflow_runs_make_test_on_pull_requests():
    tests = workflow("tests.yml")
    assert "pull_request" in tests["on"]
    assert any(s.get("run") == ".ci/run" for s in steps(tests))
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_workflows_match_the_github_schema():
    validator = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which(
        "check-jsonschema")
    assert validator, "check-jsonschema (a test dependency of pyproject.toml) is not installed"
    result = subprocess.run([validator, "--builtin-schema", "vendor.github-workflows",
                             *map(str, sorted(WORKFLOWS.glob("*.yml")))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_book_config_names_the_repository_buttons_logo_and_favicon():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository["url"]) and repository["branch"]
    assert config["launch_buttons"]["binderhub_url"] and config["launch_buttons"]["colab_url"]
    html = config["html"]
    for button in ("use_repository_button", "use_edit_page_button", "use_issues_button", "use_download_button"):
        assert html[button] is True, button
    assert (ROOT / html["favicon"]).is_file() and (ROOT / config["logo"]).is_file()
    for extension, folder in config["sphinx"]["local_extensions"].items():
        assert (ROOT / folder / f"{extension}.py").is_file()


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.stem)
def test_first_cell_installs_the_package_on_colab_only_from_the_configured_repository(source):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    first = jupytext.read(source).cells[0]
    assert first.cell_type == "code" and "remove-cell" in first.metadata.get("tags", [])
    assert 'if "google.colab" in sys.modules:' in first.source
    assert f"git+{config['url']}@{config['branch']}" in first.source
