import logging
import sys
import threading

from conveyor.runtime.capture import capturing, step_log


def test_each_thread_collects_its_own_output(capsys):
    logs: dict[str, list[str]] = {}
    ready = threading.Barrier(2, timeout=5)

    def work(tag: str) -> None:
        with step_log() as log:
            ready.wait()
            for i in range(50):
                print(f"{tag}{i}")
                logging.getLogger("t").warning("%s-log", tag)
        logs[tag] = log

    with capturing():
        threads = [threading.Thread(target=work, args=(t,)) for t in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("outside")
    a, b = "".join(logs["a"]), "".join(logs["b"])
    assert "a49" in a
    assert "b0" not in a
    assert "b-log" not in a
    assert "b49" in b
    assert "a0" not in b
    assert "a-log" in a
    assert "outside" not in a + b
    assert "outside" in capsys.readouterr().out


def test_everything_is_restored():
    root = logging.getLogger()
    before = (sys.stdout, sys.stderr, root.level, list(root.handlers))
    with capturing(), capturing():
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr, root.level, list(root.handlers)) == before


def test_info_is_captured_when_logging_was_never_configured(monkeypatch, capsys):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    with capturing(), step_log() as log:
        logging.getLogger("quiet").info("detail")
        logging.getLogger("quiet").warning("careful")
    text = "".join(log)
    assert "INFO quiet: detail" in text
    assert "WARNING quiet: careful" in text
    assert "careful" in capsys.readouterr().err  # as Python's last-resort handler prints it
    assert root.level == logging.WARNING
