"""The versioned GX suites under expectations/ are what the schema module generates."""

import json
import shutil
import uuid
from pathlib import Path

from chicago_taxi.quality import suites
from chicago_taxi.quality.gates import RAW_SUITE, TRANSFORMED_SUITE
from fixtures.env import EXPECTATIONS


def _as_float(v):
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _normalized(expectations):
    as_float = _as_float
    return sorted(json.dumps([e["type"], {k: as_float(v) for k, v in e["kwargs"].items()}], sort_keys=True) for e in expectations)


def test_committed_suites_match_the_schema_module():
    # Schema adherence: a schema change must come with regenerated suites (make suites).
    for name, expected in ((RAW_SUITE, suites.raw_suite_expectations()), (TRANSFORMED_SUITE, suites.transformed_suite_expectations())):
        stored = json.loads((EXPECTATIONS / "gx" / "expectations" / f"{name}.json").read_text())["expectations"]
        assert _normalized(stored) == _normalized(expected), name


def test_pinned_ids_do_not_depend_on_the_random_ids_gx_wrote(tmp_path):
    # GX assigns random ids on every write; `make suites` must not rewrite unchanged suites, and
    # an id must stay the same in every file that refers to it.
    def write(project, suite_id, expectation_id):
        (project / "expectations").mkdir(parents=True)
        (project / "validation_definitions").mkdir()
        (project / "great_expectations.yml").write_text("config_version: 4\n")
        (project / "expectations" / "raw.json").write_text(json.dumps({"id": suite_id, "expectations": [{"id": expectation_id}]}))
        (project / "validation_definitions" / "raw.json").write_text(json.dumps({"suite": {"id": suite_id, "name": "raw"}}))

    projects = []
    for n in range(2):
        project = tmp_path / f"gx{n}"
        write(project, str(uuid.uuid4()), str(uuid.uuid4()))
        suites.pin_ids(project)
        projects.append({p.relative_to(project): p.read_text() for p in sorted(project.rglob("*.json"))})
    assert projects[0] == projects[1]
    suite = json.loads(projects[0][Path("expectations/raw.json")])
    assert json.loads(projects[0][Path("validation_definitions/raw.json")])["suite"]["id"] == suite["id"] != suite["expectations"][0]["id"]


def test_the_committed_ids_are_already_pinned(tmp_path):
    project = tmp_path / "gx"
    shutil.copytree(EXPECTATIONS / "gx", project, ignore=shutil.ignore_patterns("uncommitted"))
    before = {p: p.read_text() for p in project.rglob("*") if p.is_file()}
    suites.pin_ids(project)
    assert {p: p.read_text() for p in project.rglob("*") if p.is_file()} == before
