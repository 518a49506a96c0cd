"""The machine and versions recorded beside every verdict file and manifest (provenance)."""

import json
import platform

from largebatch import analysis, provenance


def test_cpu_model_is_read_from_cpuinfo_with_a_fallback(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    assert provenance.cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert provenance.cpu_model(tmp_path / "absent") == (platform.processor() or platform.machine())


def test_environment_names_machine_and_versions():
    record = provenance.environment()
    assert set(record) == {"cpu", "cores", "usable_cores", "platform", "python", "torch", "largebatch"}
    assert record["cores"] >= record["usable_cores"] >= 1
    assert record["python"] == platform.python_version() and record["torch"][0].isdigit()
    json.dumps(record)  # plain data


def test_verdict_files_carry_the_provenance(tmp_path):
    verdict = analysis.Verdict("A5", "reproduced", "c", "e")
    analysis.record_verdicts("02_sharp_minima", [verdict], [0, 1, 2], tmp_path)
    content = json.loads((tmp_path / "02_sharp_minima.verdicts.json").read_text())
    assert content["provenance"] == provenance.environment() and content["seeds"] == [0, 1, 2]
