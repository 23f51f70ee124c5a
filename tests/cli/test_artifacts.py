import json

from conveyor.stores.backends import open_artifact_store


def test_ls_and_get(project, tmp_path):
    run_id = project.run_ids[0]
    data = json.loads(project.cli("artifacts", "ls", run_id, "--json").stdout)
    assert [a["path"] for a in data] == ["reports/report.txt"]
    assert "reports/report.txt" in project.cli("artifacts", "ls", run_id).stdout
    dest = tmp_path / "got"
    project.cli("artifacts", "get", run_id, "reports/report.txt", "--dest", str(dest))
    assert (dest / "report.txt").read_text() == "all good\n"


def test_get_refuses_traversal(project, tmp_path):
    done = project.cli("artifacts", "get", project.run_ids[0], "../../x", ok=False)
    assert done.returncode == 1
    assert "unsafe artifact path" in done.stderr


def test_gc_deletes_only_unreferenced(project):
    cas = open_artifact_store(str(project.root / ".conveyor" / "artifacts"))
    orphan = cas.put_bytes(b"nobody points at me")
    kept = set(cas.iter_digests()) - {orphan.sha256}
    dry = project.cli("gc", "--dry-run", "--min-age-hours", "0").stdout
    assert "would delete 1 unreferenced file(s)" in dry
    assert cas.exists(orphan.sha256)
    young = project.cli("gc").stdout  # the orphan is younger than the default hour
    assert "deleted 0" in young
    project.cli("gc", "--min-age-hours", "0")
    assert not cas.exists(orphan.sha256)
    assert set(cas.iter_digests()) == kept


def test_gc_keeps_what_monitors_point_at(project):
    from conveyor.core.loop import Evaluation
    from conveyor.stores.backends import open_loop_store

    cas = open_artifact_store(str(project.root / ".conveyor" / "artifacts"))
    report = cas.put_bytes(b"<html>a monitor's report</html>").sha256
    profile = cas.put_bytes(b"a serving profile").sha256
    orphan = cas.put_bytes(b"nobody points at me either").sha256
    loop = open_loop_store(f"sqlite:///{project.root / '.conveyor' / 'conveyor.db'}")
    loop.add_evaluation(Evaluation("m", "flights", 0, 1, "ok", report_sha256=report))
    loop.set_state("monitor:m:serving:v1", json.dumps({"sha256": profile}))
    loop.close()
    project.cli("gc", "--min-age-hours", "0")
    assert cas.exists(report)
    assert cas.exists(profile)
    assert not cas.exists(orphan)
